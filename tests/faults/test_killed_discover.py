"""Fault injection: ``kill -9`` of the real ``discover`` step at its writes (see
``killed_step.py``).

The step crawls a folder (a semicolon-delimited CSV, the training table, whose delimiter is
an audited data change, and a Parquet file) into a real home: the catalog's files (a version
file per dataset and schema, the index, the crawl cache, the published metadata), DataHub
Lite (SQLite) and the audit trail anchored in MLflow. Before each cycle a column is added to
the table, so each crawl records a new schema version. The step kills itself with SIGKILL
just before one of its writes: a version file written but not renamed into place, versions
written and the index not yet, the index written and the crawl cache not yet, halfway
through DataHub Lite's rows, before the audit event, before the training data is renamed
into place, before the trail's anchor moves (each the n-th write of its kind, so the
points follow the code).

After each kill nothing stored is half-written: every JSON file parses, the index opens and
every version it names exists and parses, DataHub Lite opens, the audit trail verifies, and
a step output is either absent or whole. The rerun recovers: the table's versions are
1..n with no gap and no duplicate (the killed crawl's version is recorded once), the
schema and the data carry the new column, Lite holds the new schema, and the trail records
the delimiter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.faults import StepWorker, step_home

pytestmark = pytest.mark.slow  # 7 kills and reruns, each a process of its own: minutes

TABLE = "files/customers.csv"
LITE_WRITE = "datahub.lite.sql_backed_lite:SqlBackedLite.write"


@dataclass
class Stage:
    root: Path
    home: Path
    data: Path
    env: dict[str, str]
    config: dict
    worker: StepWorker


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    from autokfp.examples.churn import generate_churn

    root = tmp_path_factory.mktemp("killed-discover")
    home, data = root / "home", root / "data"
    data.mkdir()
    frame = generate_churn(300, seed=3)
    frame.to_csv(data / "customers.csv", index=False, sep=";")
    frame.head(50).to_parquet(data / "other.parquet", index=False)
    config = {"name": "churn-test",
              "sources": [{"name": "files", "kind": "folder", "path": str(data)}],
              "training": {"dataset": TABLE, "target": "churned", "id_column": "customer_id"},
              "quality": {"min_rows": 100}}
    with step_home(root) as env:  # this process checks the same home
        worker = StepWorker(env, ["autokfp.steps.discover", LITE_WRITE.split(":")[0]])
        try:
            yield Stage(root, home, data, env, config, worker)
        finally:
            worker.close()


def _add_column(stage: Stage, n: int) -> None:
    """A compatible schema change: the table gets column ``extra_<n>``."""
    path = stage.data / "customers.csv"
    frame = pd.read_csv(path, sep=";")
    frame[f"extra_{n}"] = range(len(frame))
    frame.to_csv(path, index=False, sep=";")


def _outputs(stage: Stage, n: int) -> dict[str, Path]:
    out = stage.root / "out"
    return {"dataset_path": out / f"dataset-{n}.parquet", "schema_path": out / f"schema-{n}.json",
            "catalog_path": out / f"catalog-{n}.json"}


def _run(stage: Stage, n: int, kill_on: tuple[str, str, int] | None = None
         ) -> tuple[int, list[tuple[str, str]]]:
    """The step for cycle ``n``, killed at ``kill_on`` (kind, text in the target, n-th)."""
    name = "killed" if kill_on else "full"
    events = stage.root / f"events-{n}-{name}.txt"
    spec = stage.root / f"spec-{n}-{name}.json"
    spec.write_text(json.dumps({
        "kill_at": 0, "kill_on": kill_on, "roots": [str(stage.home), str(stage.root / "out")],
        "events": str(events), "count_calls": [LITE_WRITE],
        "call": "autokfp.steps.discover:discover",
        "kwargs": {"config": stage.config,
                   **{k: str(v) for k, v in _outputs(stage, n).items()}}}))
    done = stage.worker.run(spec, timeout=600)
    if not kill_on:
        assert done.returncode == 0, done.stderr[-3000:]
    points = [tuple(line.split("\t")[1:3]) for line in events.read_text().splitlines()
              if "\t" in line]
    return done.returncode, points  # type: ignore[return-value]


def _table_versions() -> list[int]:
    from autokfp.catalog.store import CatalogStore

    return [int(v["version"]) for v in CatalogStore().versions(TABLE)]


def _assert_nothing_half_written(stage: Stage, n: int) -> None:
    from autokfp.catalog.datahub import read_lite
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.catalog.store import CatalogStore
    from autokfp.governance import audit
    from autokfp.settings import Settings

    for path in stage.home.rglob("*.json"):
        if not path.name.startswith("."):  # temp files of an atomic write are not the file
            json.loads(path.read_text())
    store = CatalogStore()
    index = store.load_index()
    assert TABLE in index or n == 0
    for dataset_id, entry in index.items():  # every version the index names exists, parses
        numbers = [int(v["version"]) for v in store.versions(dataset_id)]
        assert numbers == list(range(1, int(entry.get("latest_version", 0)) + 1)), dataset_id
    read_lite(Settings.from_env().home / "catalog", "urn:li:corpuser:nobody")  # Lite opens
    verification = audit.verify_trail()
    assert verification.ok, verification.problems
    outputs = _outputs(stage, n)
    if outputs["dataset_path"].exists():
        assert len(pd.read_parquet(outputs["dataset_path"])) == 300
    if outputs["schema_path"].exists():
        DatasetSchema.from_json(outputs["schema_path"].read_text())
    if outputs["catalog_path"].exists():
        json.loads(outputs["catalog_path"].read_text())


def _assert_recovered(stage: Stage, n: int) -> None:
    from autokfp.catalog.datahub import dataset_urn, read_lite
    from autokfp.catalog.schema import DatasetSchema
    from autokfp.governance import audit
    from autokfp.settings import Settings

    _assert_nothing_half_written(stage, n)
    assert _table_versions() == list(range(1, n + 2)), "a version lost or recorded twice"
    outputs = _outputs(stage, n)
    schema = DatasetSchema.from_json(outputs["schema_path"].read_text())
    assert schema.catalog["schema_version"] == n + 1
    assert f"extra_{n}" in pd.read_parquet(outputs["dataset_path"]).columns
    lite = read_lite(Settings.from_env().home / "catalog", dataset_urn(schema))
    fields = [f["fieldPath"] for f in lite["schemaMetadata"]["fields"]]
    assert f"extra_{n}" in fields, fields
    changed = [e for e in audit.read_events() if e["kind"] == "data.changed"
               and e["details"].get("dataset") == TABLE]
    assert changed and "delimited by ';'" in " ".join(changed[-1]["details"]["changes"])


# where to kill: (kind of write, text in its target, n-th such write)
KILL_POINTS = {
    "a version file written, not renamed into place": ("os.rename", "/datasets/files_customers", 1),
    "the versions written, the index not yet": ("os.rename", "/catalog/index.json", 1),
    "the index written, the crawl cache not yet": ("os.rename", "crawl-cache.json", 1),
    "DataHub Lite half written": (f"call.{LITE_WRITE.split(':')[1]}", "", 3),
    "no audit event yet": ("open-for-write", "events.jsonl", 1),
    "the training data not renamed into place": ("os.rename", "/out/dataset-", 1),
    "the trail's anchor not yet moved": ("tracking.set_experiment_tag", "", 1),
}


def test_kill_9_of_the_discover_step_loses_nothing_and_a_rerun_recovers(stage):
    _run(stage, 0)  # the first crawl: version 1
    _assert_nothing_half_written(stage, 0)
    assert _table_versions() == [1]
    for n, (where, kill_on) in enumerate(KILL_POINTS.items(), start=1):
        _add_column(stage, n)
        code, reached = _run(stage, n, kill_on=kill_on)
        assert code == -9, f"{where}: the step was not killed (exit {code})"
        assert reached[-1][0] == kill_on[0] and kill_on[1] in reached[-1][1], (where, reached[-1])
        _assert_nothing_half_written(stage, n)
        assert _table_versions() in ([*range(1, n + 1)], [*range(1, n + 2)]), where

        _run(stage, n)  # the retry
        _assert_recovered(stage, n)
