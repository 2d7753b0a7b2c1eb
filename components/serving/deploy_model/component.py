"""KFP component: the KServe InferenceService for the champion."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from autokfp.settings import image


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def deploy_model(
    registration: Input[Artifact],
    test: Input[Dataset],
    manifest: Output[Artifact],
    decision: Output[Artifact],
    require_approval: bool = False,
    config: dict = {},  # noqa: B006 - KFP needs a literal default; never mutated
) -> str:
    """Deploy the champion to KServe, verify it, then promote it or roll back on its own.

    Writes the InferenceService for the current champion. In a cluster it is applied
    through KServe's ``KServeClient``; locally the predictor is started on 127.0.0.1. A
    version that replaces a serving one goes out, in Serverless mode, as a canary on its own
    revision (``deploy.canary_traffic_percent``), optionally after a shadow of live traffic
    (``deploy.strategy: shadow``) or as a timed A/B split (``ab``); in Standard (raw) mode
    as a blue-green candidate (``deploy.mode``), optionally shadowed first or A/B split with
    the serving version by the serving predictors themselves. Verification, on
    the new version alone:
    readiness of the generation it wrote, a smoke test on held-out rows whose predictions
    must equal the offline ones, single-row latency within ``deploy.latency_budget_ms``, and
    the new ``model_version`` in every answer. A failure rolls back: traffic and the
    registry's ``champion`` alias return to the previous version, which served throughout,
    and the failed one is marked ``rejected``. See docs/serving.md.

    Usable alone: ``deploy_model(registration=r.outputs["registration"],
    test=f.outputs["test"])`` (no run config: the model and target are the registration's,
    the deploy settings their defaults: KServe through the Kubernetes API in a cluster, the
    predictor on 127.0.0.1 elsewhere).

    Args:
        registration: The registration JSON from ``register_model`` (the model's name and
            target).
        test: Held-out test rows (Parquet) for the smoke test.
        manifest: Output. The InferenceService YAML.
        decision: Output. JSON: target, action, outcome (promoted / rolled-back / skipped /
            awaiting-approval),
            every verification check with its detail.
        require_approval: Only deploy a version a person approved (``autokfp approve``);
            a config that requires approval keeps requiring it.
        config: Optional: the run configuration (``deploy``: target, namespace, replicas,
            resources, canary percent, verification settings; autokfp's pipelines pass the
            resolved one).

    Returns:
        The outcome: ``promoted``, ``rolled-back``, ``skipped`` or ``awaiting-approval`` (a
        policy requires a person's approval: ``autokfp approve MODEL VERSION``).

    Raises:
        DeploymentError: no champion exists, or a first version failed verification.

    Example:
        >>> deploy_model(config=cfg, registration=r.outputs["registration"], test=f.outputs["test"])
        >>> deploy_model(registration=r.outputs["registration"], test=f.outputs["test"])  # alone
    """
    import logging

    from autokfp.steps.deploy_model import deploy_model as step
    from autokfp.steps.form import named_config, registered_model
    from autokfp.steps.results import publish

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name, target = (("from config", "from config") if config
                    else registered_model(registration.path, "deploy_model"))
    run_config = named_config(config, name, what="deploy_model", dataset_path=test.path,
                              target=target, require_approval=require_approval)
    return publish(step(run_config, registration.path, test.path, manifest.path, decision.path),
                   manifest=manifest, decision=decision)


if __name__ == "__main__":
    from kfp import compiler

    compiler.Compiler().compile(deploy_model, "deploy_model.yaml")
