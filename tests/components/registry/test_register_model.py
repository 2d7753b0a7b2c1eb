"""The ``register_model`` component: the version it returns and the registration artifact."""

from __future__ import annotations

import json
from pathlib import Path


def test_register_model_registers_the_first_version_as_champion(registered) -> None:
    registration = registered["registration"]
    assert registered["version"] == "1"
    assert registration.metadata["model"] == "churn-test"
    assert registration.metadata["aliases"] == "champion"
    assert json.loads(Path(registration.path).read_text())["promoted"] is True


def test_the_model_version_carries_the_kfp_run_and_pipeline(registered) -> None:
    from autokfp.modeling import registry

    tags = registry.configure().get_model_version("churn-test", registered["version"]).tags
    assert tags["kfp.run_id"] == "run-abc"
    assert tags["kfp.pipeline_name"] == "autonomous-training"

