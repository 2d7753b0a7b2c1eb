"""One home, the session's trained model as inputs, and one bias check, for the package."""

from __future__ import annotations

import pytest
from kfp.dsl import Artifact, Dataset, Markdown, Metrics, Model

from autokfp.components import bias_check
from tests.components import artifact
from tests.conftest import small_config, use_home


@pytest.fixture(scope="package")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        yield use_home(patch, tmp_path_factory.mktemp("governance-components-home"))


@pytest.fixture(scope="package")
def inputs(trained_package):
    paths = trained_package.paths
    folder = paths.model.parent
    return {
        "config": small_config(trained_package.folder,
                               governance={"shap_rows": 2, "explain_rows": 100}).to_dict(),
        "train": artifact(Dataset, folder, "train", paths.train),
        "test": artifact(Dataset, folder, "test", paths.test),
        "plan": artifact(Artifact, folder, "plan", paths.plan),
        "schema": artifact(Artifact, folder, "schema", paths.schema),
        "model": artifact(Model, folder, "model", paths.model),
    }


@pytest.fixture(scope="package")
def checked(home, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bias-check")
    outputs = {"checked_model": artifact(Model, out, "checked_model"),
               "report": artifact(Markdown, out, "report"),
               "summary": artifact(Artifact, out, "summary"),
               "metrics": artifact(Metrics, out, "metrics")}
    # gender alone, as in tests/engine/governance/test_governance_stages.py: the session's
    # 400 test rows cannot measure age, and out of fold this model breaks the age parity ratio
    config = {**inputs["config"],
              "governance": {**inputs["config"]["governance"], "sensitive_columns": ["gender"]}}
    verdict, mitigated = bias_check.python_func(
        config=config, model=inputs["model"], train=inputs["train"], test=inputs["test"],
        schema=inputs["schema"], **outputs)
    return verdict, mitigated, outputs


@pytest.fixture(scope="package")
def explained(home, inputs, checked, tmp_path_factory):
    from kfp.dsl import HTML

    from autokfp.components import explain_model

    out = tmp_path_factory.mktemp("explain")
    outputs = {"explanation": artifact(Artifact, out, "explanation"),
               "report": artifact(HTML, out, "report"),
               "plots": artifact(Artifact, out, "plots")}
    top = explain_model.python_func(config=inputs["config"], model=checked[2]["checked_model"],
                                    train=inputs["train"], test=inputs["test"], **outputs)
    return top, outputs
