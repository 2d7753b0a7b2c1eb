"""The ``bias_check`` component: the mitigated package it passes on, and its evidence."""

from __future__ import annotations

from pathlib import Path


def test_bias_check_outputs_the_package_to_register(checked) -> None:
    verdict, mitigated, outputs = checked
    assert verdict == "mitigated" and mitigated is True
    assert (Path(outputs["checked_model"].path) / "MLmodel").exists()
    assert outputs["checked_model"].metadata["fairness"] == "mitigated"
    assert "before_gender_demographic_parity_ratio" in outputs["metrics"].metadata
    assert outputs["summary"].metadata["verdict"] == "mitigated"
    assert "## Mitigation" in Path(outputs["report"].path).read_text()
