"""A corpus of hostile data files and configs: each gets a clear message, or handling that is
reported in the run summary and recorded in the audit trail (never a silent change)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from autokfp.catalog.discovery import load_dataset
from autokfp.catalog.sources.files import DATA_CHANGES
from autokfp.config import parse_config
from autokfp.edge.cli import app, data_changes
from autokfp.governance import audit

CORPUS = Path(__file__).parents[1] / "data" / "hostile"
runner = CliRunner()


def _config(folder: Path, dataset: str, target: str = "label", name: str = "hostile"):
    return parse_config({
        "name": name,
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": f"files/{dataset}", "target": target},
        "budget": {"max_runtime_secs": 10, "max_models": 1},
    })


@pytest.fixture
def folder(tmp_path) -> Path:
    target = tmp_path / "files"
    shutil.copytree(CORPUS, target)
    return target


def test_a_semicolon_delimited_csv_is_detected_and_reported(folder):
    frame, _ = load_dataset(_config(folder, "semicolon.csv"))
    assert list(frame.columns) == ["x1", "x2", "cat", "label"]
    assert len(frame) == 120
    assert frame["x1"].dtype.kind == "f"
    (note,) = frame.attrs[DATA_CHANGES]
    assert "is delimited by ';', not commas" in note


def test_a_duplicate_header_is_reported_not_silently_renamed(folder):
    frame, _ = load_dataset(_config(folder, "duplicate_header.csv"))
    assert list(frame.columns) == ["x1", "x1.1", "label"]
    (note,) = frame.attrs[DATA_CHANGES]
    assert "repeats column names" in note and "'x1' -> 'x1.1'" in note


def test_a_latin1_file_is_read_and_reported(folder):
    frame, _ = load_dataset(_config(folder, "latin1.csv"))
    assert set(frame["ville"]) == {"Zürich", "Genève"}
    assert any("not UTF-8; read it as latin-1" in n for n in frame.attrs[DATA_CHANGES])


def test_the_discover_step_audits_what_reading_changed(folder, autokfp_home, tmp_path):
    from autokfp.steps.discover import discover

    config = _config(folder, "duplicate_header.csv", name="dupes")
    before = len(audit.read_events(autokfp_home))
    summary = discover(config, str(tmp_path / "d.parquet"), str(tmp_path / "s.json"),
                       str(tmp_path / "c.json"))
    assert any("repeats column names" in c for c in summary.data_changes)
    events = [e for e in audit.read_events(autokfp_home)[before:] if e["kind"] == "data.changed"]
    assert len(events) == 1
    assert events[0]["model"] == "dupes" and events[0]["details"]["step"] == "discover"
    assert events[0]["details"]["changes"] == summary.data_changes
    assert audit.verify_trail(autokfp_home).ok

    # the terminal summary of a run lists the run's own changes, from the trail
    run = SimpleNamespace(audit_from=before)
    lines = data_changes(run, SimpleNamespace(name="dupes"), autokfp_home)
    assert lines == [f"discover: {c}" for c in summary.data_changes]


def test_the_engineer_step_audits_unlabelled_rows_and_dropped_columns(autokfp_home, tmp_path):
    import numpy as np
    import pandas as pd

    from autokfp.catalog.profiling import profile_frame
    from autokfp.steps.engineer_features import engineer_features

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    label = (x + rng.normal(scale=0.5, size=n) > 0).astype(float)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "x": x,
                          "leak": label * 10 + rng.normal(scale=0.01, size=n), "label": label})
    frame.loc[:24, "label"] = np.nan
    dataset = tmp_path / "d.parquet"
    frame.to_parquet(dataset)
    schema = profile_frame(frame, "files/t.parquet", "file", str(tmp_path))
    (tmp_path / "s.json").write_text(schema.to_json())
    config = parse_config({"name": "leaky", "sources": [{"name": "files", "kind": "folder",
                                                          "path": str(tmp_path)}],
                           "training": {"dataset": "files/t.parquet", "target": "label"},
                           "budget": {"max_runtime_secs": 10, "nfolds": 2},
                           "selection": {"feature_selection": "off"}})
    before = len(audit.read_events(autokfp_home))
    summary = engineer_features(config, str(dataset), str(tmp_path / "s.json"),
                                str(tmp_path / "tr.parquet"), str(tmp_path / "te.parquet"),
                                str(tmp_path / "p.json"))
    assert summary.unlabelled_rows == 25
    events = audit.read_events(autokfp_home)[before:]
    changed = [e for e in events if e["kind"] == "data.changed"]
    assert "25 of 300 rows have no value in target 'label'" in changed[0]["details"]["changes"][0]
    (dropped,) = [e for e in events if e["kind"] == "feature.dropped"]
    assert "customer_id" in dropped["details"]["columns"]
    assert "leak" in dropped["details"]["columns"], dropped["details"]
    lines = data_changes(SimpleNamespace(audit_from=before), SimpleNamespace(name="leaky"),
                         autokfp_home)
    assert any(line.startswith("engineer-features: dropped column 'leak'") for line in lines)
    assert any("25 of 300 rows" in line for line in lines)


def test_square_brackets_survive_in_error_messages(tmp_path):
    missing = tmp_path / "sales[final].yaml"
    result = runner.invoke(app, ["run", str(missing)])
    assert result.exit_code == 2
    assert "sales[final].yaml" in result.output.replace("\n", "")
