"""A local run's refit step takes the warm H2O cluster the runner started once the engines
were done (``autokfp.training.h2o_refit_cluster``), fits the same model on it as on a
cluster of its own, and leaves it running and empty; the runner shuts it down. When none is
offered ready with the refit's settings, the refit starts its own as before.

The first tests need no JVM. The last starts two (the warm one and the refit's own): real
H2O, marked slow as the other tests that start clusters of their own.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from autokfp.config import BudgetSpec
from autokfp.training import h2o_refit_cluster
from autokfp.training.h2o_automl import H2OAutoMLEngine, H2OSettings, wait_for_shutdowns
from autokfp.training.h2o_refit_cluster import (
    REFIT_CLUSTER_ENV,
    TAKEN_SUFFIX,
    offered_cluster,
    refit_clusters,
    wanted,
)
from tests.engine.training.test_h2o_restart import _cloud_running, _easy_data


def _config(tmp_path: Path, **extra: object) -> dict:
    return {"name": "refit-cluster", "sources": [{"name": "files", "kind": "folder",
                                                  "path": str(tmp_path)}],
            "training": {"dataset": "files/rows.csv", "target": "y"}, **extra}


def test_a_cluster_is_wanted_only_where_the_refit_would_start_a_local_h2o_one(tmp_path) -> None:
    config = _config(tmp_path, budget={"nthreads": 1}, engines={"h2o": {"max_mem_size": "1G"}})
    assert wanted(config) == (1, "1G", 300.0)  # the settings the refit starts its cluster with
    assert wanted(_config(tmp_path, engines=["autokeras"])) is None
    never = _config(tmp_path)
    never["training"]["refit_for_serving"] = "never"
    assert wanted(never) is None
    remote = _config(tmp_path)
    remote["training"]["h2o_cluster"] = {"url": "http://h2o.example:54321"}
    assert wanted(remote) is None
    assert wanted({}) is None  # a run form's run: its config is filled in by its first task
    with refit_clusters(_config(tmp_path, engines=["autokeras"])) as handle:
        assert handle is None


@pytest.mark.parametrize("state", [
    {"state": "failed", "error": "TrainingError: the JVM did not start"},
    {"state": "ready", "url": "http://127.0.0.1:9", "name": "autokfp-other", "nthreads": 2,
     "max_mem_size": "1G"},
    {"state": "starting"},
])
def test_the_refit_starts_its_own_cluster_unless_one_is_ready_with_its_settings(
        tmp_path, monkeypatch, caplog, state: dict) -> None:
    """Failed, started with other threads (here 2 for the refit's 1: another chunking of
    the frame, maybe another model), or still starting after the refit's start limit:
    None, and the refit starts its own (``H2OAutoMLEngine._refit_cluster``)."""
    monkeypatch.delenv(REFIT_CLUSTER_ENV, raising=False)
    assert offered_cluster(1, "1G", 0.5) is None  # nothing named: a pod, a notebook
    path = tmp_path / "cluster.json"
    monkeypatch.setenv(REFIT_CLUSTER_ENV, str(path))
    assert offered_cluster(1, "1G", 0.5) is None  # named, never started (no H2O champion)
    path.write_text(json.dumps(state))
    with caplog.at_level(logging.INFO, logger=h2o_refit_cluster.__name__):
        assert offered_cluster(1, "1G", 0.5) is None
    assert "starting one" in caplog.text
    # taken once: a later refit (after a JVM died) does not wait again
    assert (tmp_path / ("cluster.json" + TAKEN_SUFFIX)).exists()


def test_a_refit_stops_waiting_when_the_clusters_process_ended_while_starting(
        tmp_path, monkeypatch, caplog) -> None:
    """The state file still says ``starting`` but the process the runner started is gone
    (killed, or dead before it could say ``failed``): the refit starts its own cluster at
    once rather than wait out its whole start limit (300 s by default; here 600 s, which
    the test would hang on)."""
    import subprocess
    import sys

    path = tmp_path / "cluster.json"
    monkeypatch.setenv(REFIT_CLUSTER_ENV, str(path))
    # the runner's start: "starting", then the id of the process it started (a process
    # that ends at once, as one dying before it could write "failed" would)
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(args, **kwargs):
        started.append(real_popen([sys.executable, "-c", "pass"], **kwargs))
        return started[-1]

    monkeypatch.setattr(h2o_refit_cluster.subprocess, "Popen", popen)
    h2o_refit_cluster.RefitCluster(path, 1, "1G", 600.0).start()
    assert json.loads(path.read_text()) == {"state": "starting"}
    started[0].wait()  # ended and reaped: its id names no process

    def no_polling(seconds: float) -> None:
        raise AssertionError("the refit polled a cluster whose process is gone")

    # this module's clock alone (time.sleep patched would fail any other thread's sleep)
    monkeypatch.setattr(h2o_refit_cluster, "time", SimpleNamespace(
        monotonic=time.monotonic, time=time.time, sleep=no_polling))
    with caplog.at_level(logging.INFO, logger=h2o_refit_cluster.__name__):
        assert offered_cluster(1, "1G", 600.0) is None
    assert "process ended before the cluster was ready" in caplog.text
    assert "starting one" in caplog.text


def _gone(cloud: str, within: float = 15.0) -> bool:
    """Whether the JVM of H2O cloud ``cloud`` is gone, polled for up to ``within`` seconds
    (its process exits a moment after it is shut down or its launcher killed)."""
    deadline = time.monotonic() + within
    while _cloud_running(cloud):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _recipe_folder(folder: Path) -> Path:
    """An H2O package's engine folder holding only a GBM recipe (what ``refit`` reads)."""
    folder.mkdir(parents=True)
    recipe = {"algo": "gbm", "model_id": "GBM_recipe",
              "params": {"ntrees": 25, "max_depth": 4, "learn_rate": 0.1, "sample_rate": 0.8,
                         "col_sample_rate": 0.8, "seed": 7, "distribution": "bernoulli"}}
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder


def _refit_predictions(engine: H2OAutoMLEngine, folder: Path, workdir: Path,
                       budget: BudgetSpec) -> tuple[np.ndarray, str]:
    """The recipe refitted as the refit step does (in a ``refit_session``), its predicted
    probabilities on other rows, and the cloud it was fitted on."""
    import h2o

    features, target = _easy_data(rows=600, seed=3)
    test, _ = _easy_data(rows=200, seed=4)
    with engine.refit_session(budget):
        result = engine.refit(folder, features, target.astype(str), "binary", ["0", "1"], [],
                              budget, "auc", workdir)
        model = h2o.get_model(result.leader)
        scores = model.predict(h2o.H2OFrame(test)).as_data_frame(use_multi_thread=False)
        cloud = h2o.cluster().cloud_name
    return scores.iloc[:, -1].to_numpy(), cloud  # the probability of class "1"


@pytest.mark.slow
def test_the_refit_fits_the_same_model_on_the_runs_warm_cluster(tmp_path, monkeypatch,
                                                                caplog) -> None:
    import h2o

    budget = BudgetSpec(max_runtime_secs=10, nthreads=1)
    settings = H2OSettings(max_mem_size="1G")
    folder = _recipe_folder(tmp_path / "gated" / "engine")
    config = _config(tmp_path, budget={"nthreads": 1}, engines={"h2o": {"max_mem_size": "1G"}})
    monkeypatch.delenv(REFIT_CLUSTER_ENV, raising=False)
    with refit_clusters(config, tmp_path / "cluster.log") as handle:
        assert handle is not None
        handle.start()  # the runner's, as select-model starts
        with caplog.at_level(logging.INFO):
            warm, cloud = _refit_predictions(H2OAutoMLEngine(settings), folder,
                                             tmp_path / "warm", budget)
        state = json.loads(handle.state.read_text())
        assert state["state"] == "ready" and cloud == state["name"]
        assert f"refitting on the run's warm H2O cluster {cloud}: waited" in caplog.text
        # the refit left it running, with nothing of its own on it
        assert _cloud_running(cloud)
        h2o.connect(url=state["url"], verbose=False, strict_version_check=False)
        assert h2o.ls().empty
        h2o.connection().close()
    # the runner's close shut it down (a JVM killed after the grace ends a moment later)
    assert _gone(cloud)
    assert not handle.state.parent.exists()

    monkeypatch.setenv(REFIT_CLUSTER_ENV, "0")  # none offered: a cluster of its own
    own, own_cloud = _refit_predictions(H2OAutoMLEngine(settings), folder, tmp_path / "own",
                                        budget)
    wait_for_shutdowns()
    assert own_cloud != cloud and _gone(own_cloud)
    # the same model: a GBM with these settings fitted on the same rows, whichever cluster
    assert len(own) == 200 and float(np.std(own)) > 0.1
    np.testing.assert_array_equal(warm, own)
    assert pd.Series(warm).between(0, 1).all()
