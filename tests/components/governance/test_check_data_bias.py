"""The ``check_data_bias`` component: the verdict, the report and its summary."""

from __future__ import annotations

import json
from pathlib import Path

from kfp.dsl import Artifact, Markdown

from autokfp.components import check_data_bias
from tests.components import artifact


def test_check_data_bias_writes_its_report(home, inputs, tmp_path) -> None:
    report, summary = artifact(Markdown, tmp_path, "report"), artifact(Artifact, tmp_path, "s")
    verdict = check_data_bias.python_func(config=inputs["config"], train=inputs["train"],
                                          plan=inputs["plan"], schema=inputs["schema"],
                                          report=report, summary=summary)
    assert verdict in ("pass", "warn")
    assert summary.metadata["sensitive_columns"] == "age,gender"  # both recognised by name
    assert json.loads(Path(summary.path).read_text())["data"]["gender"]["groups"]
    assert Path(report.path).read_text().strip()
