"""The GPU training tasks' KFP cache key across runs: the same when the data and the training
settings are unchanged, another when either changes (issue 15, docs/kubeflow-ui.md item 1).

KFP's key of a task holds its parameters' values and its input artifacts' MLMD ids, new for
every artifact a task publishes when it runs (``tests/kfp_cache_key.py`` re-implements the
backend's formula and cites its sources). The compiled ``autonomous-training`` is run here
through that model of the backend, up to the training tasks, with the real steps (resolve
the config, engineer the features, list the engines, load the training data) on real data
written anew in each run as ``discover`` writes it; the training itself is not run.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp import compiler

from autokfp.pipelines import build_autonomous_training
from tests.kfp_cache_key import KfpBackend

LOOP = "for-loop-1"
TARGET = "train-model"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("ir") / "autonomous-training.yaml"
    compiler.Compiler().compile(build_autonomous_training(), str(path))
    return next(yaml.safe_load_all(path.read_text()))


def _config(folder: Path, **changes) -> dict:
    config = {
        "name": "churn-cache",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/customers.parquet", "target": "churned",
                     "id_column": "customer_id"},
        "budget": {"max_runtime_secs": 15},
        "engines": {"h2o": {"max_models": 4, "nfolds": 3, "include_algos": ["GLM", "GBM"]}},
        "quality": {"min_rows": 100},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


class Run:
    """One pipeline run's tasks, executed by the real steps on the run's own files."""

    def __init__(self, work: Path, frame: pd.DataFrame) -> None:
        self.work, self.frame = work, frame
        work.mkdir(parents=True)

    def path(self, artifact_id: str, suffix: str) -> str:
        return str(self.work / f"artifact-{artifact_id}{suffix}")

    def __call__(self, task: str, parameters: dict, inputs: dict, outputs: dict) -> dict:
        if task == "resolve-config":
            from autokfp.steps.resolve_config import resolve_config

            return {"Output": resolve_config(**parameters).config}
        if task == "discover":
            from autokfp.catalog.profiling import profile_frame

            # discover writes the dataset anew in every run (it is never cached)
            self.frame.to_parquet(self.path(outputs["dataset"], ".parquet"), index=False)
            schema = profile_frame(self.frame, "files/customers.parquet", "file", str(self.work))
            Path(self.path(outputs["schema"], ".json")).write_text(schema.to_json())
            return {}
        if task == "engineer-features":
            from autokfp.steps.engineer_features import engineer_features

            result = engineer_features(
                parameters["config"], self.path(inputs["dataset"], ".parquet"),
                self.path(inputs["schema"], ".json"), self.path(outputs["train"], ".parquet"),
                self.path(outputs["test"], ".parquet"), self.path(outputs["plan"], ".json"),
                self.path(outputs["report"], ".md"), store_training_data=True)
            return {"task": result.task, "features": result.features,
                    "training_data": result.training_data}
        if task == "list-engines":
            from autokfp.components import list_engines

            # the component itself: inputs the task leaves unset take its own defaults
            return {"Output": list_engines.python_func(**parameters)}
        if task == "load-training-data":
            from autokfp.steps.load_training_data import load_training_data

            loaded = load_training_data(parameters["training_data"],
                                        self.path(outputs["train"], ".parquet"),
                                        self.path(outputs["plan"], ".json"))
            assert loaded.train_rows > 0
            return {}
        raise AssertionError(f"the training tasks are not expected to read task {task!r}")


def test_training_tasks_are_fed_by_a_cached_task_with_parameters_only(compiled):
    """Wherever the GPU tasks' train/plan come from, that task is cached and has no input
    artifact: only then can its (and so their) key be the same in a new run."""
    loop = compiled["root"]["dag"]["tasks"][LOOP]
    producers = {spec["taskOutputArtifact"]["producerTask"]
                 for spec in loop["inputs"]["artifacts"].values()}
    assert producers == {"load-training-data"}
    feeder = compiled["root"]["dag"]["tasks"]["load-training-data"]
    assert feeder["cachingOptions"]["enableCache"] is True
    assert "artifacts" not in feeder["inputs"]
    assert set(feeder["inputs"]["parameters"]) == {"training_data"}
    body = compiled["components"][loop["componentRef"]["name"]]["dag"]["tasks"][TARGET]
    assert body["cachingOptions"]["enableCache"] is True


def test_training_cache_key_follows_the_data_and_the_training_settings_only(
        compiled, tmp_path, autokfp_home):
    from autokfp.examples.churn import generate_churn

    frame = generate_churn(600, seed=5)
    backend = KfpBackend(compiled)
    folder = tmp_path / "source"
    folder.mkdir()
    frame.to_parquet(folder / "customers.parquet", index=False)  # what resolve-config checks

    def run(label: str, config: dict, data: pd.DataFrame = frame, **form):
        records, prints = backend.run({"config": config, **form}, Run(tmp_path / label, data),
                                      LOOP, TARGET)
        assert len(prints) == 1  # one engine, one training task
        return records, prints[0]

    base = _config(folder)
    first_records, first = run("first", base)
    again_records, again = run("again", copy.deepcopy(base))
    # a second run on the same data with the same settings: the GPU tasks' key is the same
    assert again == first
    # because: discover and engineer-features ran again and published new artifacts...
    assert not again_records["engineer-features"].cached
    assert again_records["engineer-features"].artifacts["train"] != \
        first_records["engineer-features"].artifacts["train"]
    # ...with the same content, so the content-addressed task was a cache hit: same artifacts
    assert not first_records["load-training-data"].cached
    assert again_records["load-training-data"].cached
    assert again_records["load-training-data"].artifacts == first_records["load-training-data"].artifacts

    # settings training does not read: the GPU tasks' key does not move
    _, unrelated = run("unrelated", _config(folder, deploy={"canary_traffic_percent": 25},
                                            monitoring={"window_days": 3.0}),
                       require_approval=True)
    assert unrelated == first

    # one training row changed: another key
    train_ids = pd.read_parquet(_train_file(tmp_path / "first", first_records),
                                columns=["customer_id"])["customer_id"]
    changed = frame.copy()
    row = changed.index[changed["customer_id"] == train_ids.iloc[0]][0]
    numeric = next(c for c in changed.columns if c not in ("customer_id", "churned")
                   and pd.api.types.is_float_dtype(changed[c]))
    changed.loc[row, numeric] = changed.loc[row, numeric] + 1.0
    row_records, changed_row = run("changed-row", copy.deepcopy(base), data=changed)
    assert not row_records["load-training-data"].cached
    assert changed_row != first

    # a setting training reads (its time budget): another key
    _, budget = run("budget", _config(folder, budget={"max_runtime_secs": 20}))
    assert budget not in (first, changed_row)


def _train_file(work: Path, records) -> Path:
    return work / f"artifact-{records['engineer-features'].artifacts['train']}.parquet"


def test_compiling_again_changes_nothing_the_training_tasks_keys_read(compiled, tmp_path):
    """A run submitted from a fresh compile (``autokfp compile`` again, a notebook) must find
    the earlier runs' cache entries: the image, command and args of the tasks on the way to
    training, and their inputs' wiring, are the same in a second compile."""
    path = tmp_path / "again.yaml"
    compiler.Compiler().compile(build_autonomous_training(), str(path))
    again = next(yaml.safe_load_all(path.read_text()))
    for executor in ("exec-load-training-data", "exec-train-model"):
        assert again["deploymentSpec"]["executors"][executor] == \
            compiled["deploymentSpec"]["executors"][executor]
    for component in ("comp-load-training-data", "comp-train-model"):
        assert again["components"][component] == compiled["components"][component]
    assert again["root"]["dag"]["tasks"]["load-training-data"] == \
        compiled["root"]["dag"]["tasks"]["load-training-data"]
