"""The live window, its labels and the reference: what is read, and what is reported."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from autokfp import storage
from autokfp.config import parse_config
from autokfp.modeling.features import FeaturePlan
from autokfp.monitoring.window import (
    LABEL_COLUMN,
    Champion,
    join_labels,
    parse_time,
    read_labels,
    read_window,
    reference_uri,
    resolve_reference,
    store_reference,
    window_end_time,
)
from autokfp.serving.prediction_log import PredictionLogger


def _log(root: str, version: str, frame: pd.DataFrame) -> None:
    logger = PredictionLogger(root, "churn", version, flush_seconds=0.1)
    outputs = pd.DataFrame({"prediction": [0] * len(frame), "probability_1": [0.2] * len(frame)})
    logger.log(frame, outputs, request_id=f"r-{version}")
    logger.close()


def test_the_window_holds_only_the_champions_rows_and_names_the_others(autokfp_home):
    root = autokfp_home.artifact_root
    _log(root, "2", pd.DataFrame({"customer_id": ["a", "b"], "age": [30.0, 40.0]}))
    _log(root, "1", pd.DataFrame({"customer_id": ["c"], "old_column": ["x"]}))
    now = datetime.now(timezone.utc)
    window = read_window(root, "churn", "2", now - timedelta(days=1), now + timedelta(minutes=1))
    assert list(window.frame["customer_id"]) == ["a", "b"]
    assert set(window.frame.columns) >= {
        "output_prediction",
        "output_probability_1",
        "request_id",
        "model_version",
        "logged_at",
    }
    assert window.other_versions["1"]["rows"] == 1
    assert "old_column" in window.other_versions["1"]["columns"]
    verify = PredictionLogger(root, "churn", "2", flush_seconds=0.1)  # a deploy's smoke test
    verify.log(
        pd.DataFrame({"customer_id": ["s"], "age": [1.0]}),
        pd.DataFrame({"prediction": [0]}),
        request_id="autokfp-verify-123",
    )
    verify.close()
    window = read_window(root, "churn", "2", now - timedelta(days=1), now + timedelta(minutes=1))
    assert list(window.frame["customer_id"]) == ["a", "b"]
    assert "1 rows of deploy verification requests" in window.notes[0]
    earlier = read_window(root, "churn", "2", now - timedelta(days=3), now - timedelta(days=2))
    assert earlier.frame.empty and earlier.files == 0


def test_times_parse_from_iso_and_scheduled_time():
    assert parse_time("2025-06-30T12:00:00Z") == datetime(2025, 6, 30, 12, tzinfo=timezone.utc)
    assert parse_time("20250630120000") == datetime(2025, 6, 30, 12, tzinfo=timezone.utc)
    default = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert parse_time("[[ScheduledTime]]", default) == default  # not substituted: now / default
    assert parse_time("", default) == default
    assert parse_time("now", default) == default


def test_the_window_ends_at_the_scheduled_time_in_its_formats():
    default = datetime(2025, 1, 1, tzinfo=timezone.utc)
    tick = datetime(2026, 1, 9, 13, tzinfo=timezone.utc)
    # what the v2 backend substitutes (RFC 3339, Z), newer kfp.local (fractions), an offset
    assert window_end_time("scheduled", "2026-01-09T13:00:00Z", default) == tick
    assert window_end_time("scheduled", "2026-01-09T13:00:00.000000Z", default) == tick
    assert window_end_time("scheduled", "2026-01-09T14:00:00+01:00", default) == tick
    assert window_end_time("scheduled", "20260109130000", default) == tick
    # not substituted (kfp.local 2.17) or absent: now / default
    placeholder = "{{$.pipeline_job_schedule_time_utc}}"
    assert window_end_time("scheduled", placeholder, default) == default
    assert window_end_time("scheduled", "", default) == default
    # an explicit end wins over the scheduled time
    assert window_end_time("2025-06-30T12:00:00Z", "2026-01-09T13:00:00Z") == datetime(
        2025, 6, 30, 12, tzinfo=timezone.utc
    )
    assert window_end_time("now", "2026-01-09T13:00:00Z", default) == default
    with pytest.raises(ValueError, match="scheduled"):
        window_end_time("scheduled", "yesterday-ish")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("next tuesday")


def test_labels_are_read_from_a_folder_and_joined_by_id(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    pd.DataFrame({"customer_id": ["a", "b"], "churned": [1, 0]}).to_csv(
        folder / "day1.csv", index=False
    )
    pd.DataFrame({"customer_id": ["b"], "churned": [1]}).to_parquet(folder / "day2.parquet")
    labels = read_labels(str(folder), "customer_id", "churned")
    assert labels.frame.set_index("customer_id")["churned"].to_dict() == {
        "a": 1,
        "b": 1,
    }  # latest wins
    window = pd.DataFrame({"customer_id": ["a", "b", "z"], "age": [1, 2, 3]})
    joined, note = join_labels(window, labels, "customer_id", "churned")
    assert joined[LABEL_COLUMN].tolist()[:2] == [1, 1] and pd.isna(joined[LABEL_COLUMN].iloc[2])
    assert note.startswith("2 of 3 window rows have a label")
    # integer labels stay integers next to rows without one (as text they must match the
    # class labels "0"/"1", not "1.0"); found by make test-cluster, where v2 requests
    # carried no id
    assert [str(v) for v in joined[LABEL_COLUMN].dropna()] == ["1", "1"]


def test_labels_that_never_arrived_or_cannot_be_joined_are_explained(tmp_path):
    assert "no label source" in read_labels(None, "id", "y").note
    assert "no labels have arrived" in read_labels(str(tmp_path / "nothing"), "id", "y").note
    (tmp_path / "bad.csv").write_text("id,other\n1,2\n")
    assert "lacks column(s) ['y']" in read_labels(str(tmp_path / "bad.csv"), "id", "y").note
    labels = read_labels(str(tmp_path / "bad.csv"), "id", "other")
    joined, note = join_labels(pd.DataFrame({"age": [1]}), labels, "id", "other")
    assert "carry no 'id' column" in note and joined[LABEL_COLUMN].isna().all()


# ----------------------------------------------------------------------------- reference


def _champion(tmp_path, registered_at: datetime, tags: dict | None = None) -> Champion:
    plan = FeaturePlan(
        target="churned", task="binary", classes=[0, 1], numeric=["age"], categorical=["plan"]
    )
    meta = {"task": "binary", "class_labels": ["0", "1"], "primary_metric": "auc"}
    return Champion(
        name="churn",
        version="3",
        model_dir=tmp_path / "no-model",
        plan=plan,
        meta=meta,
        tags=tags if tags is not None else {"dataset": "files/customers.csv"},
        registered_at=registered_at,
    )


def _config(folder, **monitoring):
    return parse_config(
        {
            "name": "churn",
            "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
            "training": {"dataset": "files/customers.csv", "target": "churned"},
            "monitoring": monitoring,
        }
    )


def _write_dataset(folder) -> None:
    folder.mkdir(exist_ok=True)
    pd.DataFrame(
        {"age": [30.0, 40.0, 50.0] * 20, "plan": ["a", "b", "a"] * 20, "churned": [0, 1, 0] * 20}
    ).to_csv(folder / "customers.csv", index=False)


def test_an_unchanged_training_dataset_becomes_the_stored_reference(tmp_path, autokfp_home):
    folder = tmp_path / "data"
    _write_dataset(folder)
    champion = _champion(tmp_path, datetime.now(timezone.utc) + timedelta(seconds=5))
    reference = resolve_reference(_config(folder), champion, autokfp_home)
    assert reference.source == "training-data" and len(reference.frame) == 60
    uri = reference_uri(autokfp_home.artifact_root, "churn", "3")
    assert storage.exists(uri)
    again = resolve_reference(_config(folder), champion, autokfp_home)
    assert again.source == "stored"


def test_a_dataset_changed_after_registration_is_not_a_reference(tmp_path, autokfp_home):
    folder = tmp_path / "data"
    _write_dataset(folder)
    registered = datetime.now(timezone.utc) - timedelta(hours=1)
    os.utime(folder / "customers.csv", (time.time(), time.time()))
    reference = resolve_reference(_config(folder), _champion(tmp_path, registered), autokfp_home)
    assert reference.frame is None and reference.source == "missing"
    assert "changed at" in reference.note and "after v3 was registered" in reference.note
    assert not storage.exists(reference_uri(autokfp_home.artifact_root, "churn", "3"))


def test_other_missing_references_are_explained(tmp_path, autokfp_home):
    folder = tmp_path / "data"
    _write_dataset(folder)
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    stored_only = resolve_reference(
        _config(folder, reference="stored"), _champion(tmp_path, later), autokfp_home
    )
    assert stored_only.source == "missing" and "no stored reference" in stored_only.note
    untagged = resolve_reference(_config(folder), _champion(tmp_path, later, tags={}), autokfp_home)
    assert "has no 'dataset' tag" in untagged.note
    other_schema = _champion(
        tmp_path, later, tags={"dataset": "files/customers.csv", "dataset_fingerprint": "0000"}
    )
    assert "another schema" in resolve_reference(_config(folder), other_schema, autokfp_home).note


def test_a_stored_reference_is_written_once(autokfp_home):
    rows = pd.DataFrame({"age": range(10), "plan": ["a"] * 10})
    uri = store_reference("churn", "7", rows, settings=autokfp_home, source="test")
    store_reference("churn", "7", rows.assign(age=-1), settings=autokfp_home)
    kept = pd.read_parquet(uri)
    assert kept["age"].tolist() == list(range(10))
    assert storage.exists(uri.removesuffix(".parquet") + ".json")
