"""KFP component: the model card and compliance report of the registered version."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def write_model_card(
    model: Input[Model],
    registration: Input[Artifact],
    evaluation: Input[Artifact],
    schema: Input[Artifact],
    fairness: Input[Artifact],
    explanation: Input[Artifact],
    card: Output[Markdown],
    compliance: Output[Markdown],
    compliance_summary: Output[Artifact],
    card_metadata: Output[Markdown],
    require_approval: bool = False,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> NamedTuple("Outputs", [("compliance_verdict", str), ("deployable", bool)]):
    """Write the version's model card and compliance report; log both to its MLflow run.

    The card: intended use, data with catalog links (URN, fingerprint) and lineage, metrics
    overall and per group, fairness before and after mitigation, explanations, limitations,
    training configuration, package versions. The compliance report maps checks to EU AI
    Act articles 10-15 and GDPR articles 5(1)(c)/25 with pass/fail and evidence links. The
    version is tagged ``governance.fairness`` / ``governance.compliance`` and the step is
    an audit event.

    Usable alone: every input is another component's output (below), no run config (the
    model's name is the registration's).

    Args:
        model: The MLflow pyfunc model folder that register_model registered (the same
            output its ``model`` took: refit_model's ``served_model`` in autokfp's pipeline),
            so the card describes the package that version holds.
        registration: register_model's registration JSON (name, version, run).
        evaluation: evaluate_model's evaluation JSON.
        schema: The dataset's schema JSON.
        fairness: bias_check's ``summary`` (the fairness report JSON).
        explanation: explain_model's explanation JSON.
        card: Output. The model card (Markdown).
        compliance: Output. The compliance checklist (Markdown).
        compliance_summary: Output. The checklist as JSON.
        card_metadata: Output. The card in Hugging Face form: model-card metadata (tags,
            datasets, metrics, ``model-index`` with the test results) as YAML front matter,
            then the Markdown card.
        require_approval: A person must approve the version (``autokfp approve``) before
            it is deployable; a config that requires approval keeps requiring it.
        config: Optional: the run configuration (``governance``, ``features.drop_pii``;
            autokfp's pipelines pass the resolved one).

    Returns:
        compliance_verdict: pass, incomplete or fail. deployable: false only while the
        policy requires a person's approval that has not been given.

    Example:
        >>> w = write_model_card(config=cfg, model=rf.outputs["served_model"], registration=r.outputs["registration"], evaluation=e.outputs["evaluation"], schema=d.outputs["schema"], fairness=b.outputs["summary"], explanation=x.outputs["explanation"])
    """
    import json
    import logging
    from collections import namedtuple

    from autokfp.steps.form import model_form_config, stand_in_dataset
    from autokfp.steps.results import publish
    from autokfp.steps.write_model_card import write_model_card as step

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name = json.loads(open(registration.path, encoding="utf-8").read())["name"]
    run_config = model_form_config(config, model.path, stand_in_dataset(schema.path, model.path),
                                   model_name="from config" if config else name,
                                   require_approval=require_approval)
    evidence = {"schema": schema.uri, "evaluation": evaluation.uri, "fairness_report": fairness.uri,
                "explanation": explanation.uri, "model_card": card.uri,
                "compliance_report": compliance.uri, "model": model.uri}
    outputs = namedtuple("Outputs", ["compliance_verdict", "deployable"])
    return outputs(*publish(step(run_config, model.path, registration.path, evaluation.path,
                                 schema.path, fairness.path, explanation.path, card.path,
                                 compliance.path, compliance_summary.path, evidence=evidence,
                                 card_metadata_path=card_metadata.path),
                            compliance_summary=compliance_summary))


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(write_model_card, "write_model_card.yaml")
