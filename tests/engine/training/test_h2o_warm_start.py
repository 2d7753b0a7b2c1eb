"""The local H2O cluster starts, and is warmed, while the training step prepares its rows
(``H2OAutoMLEngine.warm_start``): AutoML then trains on that very cluster, and a cluster
nobody took is shut down. Real H2O, marked slow: at load ~45 on the shared 2-core box the
first two took 174 s and 87 s (one JVM start each, a 10 s search in the first).
"""

from __future__ import annotations

import json
import time

import pytest

from autokfp.config import BudgetSpec
from autokfp.training.h2o_automl import H2OAutoMLEngine, H2OSettings, wait_for_shutdowns
from tests.engine.training.test_h2o_restart import JvmKiller, _cloud_running, _easy_data

SETTINGS = {"max_models": 2, "nfolds": 2, "max_mem_size": "1G", "include_algos": ["GLM"]}
BUDGET = BudgetSpec(max_runtime_secs=10, nthreads=2)

pytestmark = pytest.mark.slow


def _started(warm) -> str:
    """The early cluster's name once its JVM runs (the warm-up may still go on)."""
    deadline = time.monotonic() + 600
    while "cluster_start" not in warm.seconds and warm.error is None:
        assert time.monotonic() < deadline, "the early H2O cluster did not start in 600 s"
        time.sleep(0.2)
    assert warm.error is None, warm.error
    return warm.cluster.name


def test_automl_trains_on_the_cluster_started_while_the_rows_were_prepared(tmp_path) -> None:
    engine = H2OAutoMLEngine(H2OSettings(**SETTINGS))
    features, target = _easy_data()
    # the watcher names every H2O JVM this process starts (it kills none)
    with JvmKiller(times=0) as watcher, engine.warm_start(BUDGET):
        warm = engine._warm
        assert warm is not None  # started at once, before any row is prepared
        name = _started(warm)  # (the step prepares its rows meanwhile)
        assert _cloud_running(name)
        # train stops the warm-up and takes the cluster
        result = engine.train(features, target.astype(str), "binary", ["0", "1"], [], BUDGET,
                              "auc", tmp_path / "engine")
    info = json.loads((tmp_path / "engine" / "engine.json").read_text())
    # the search ran on the early cluster: no second JVM was started for it
    assert watcher.clouds == {name}, watcher.clouds
    warmed = info["warm_start"]
    assert warmed["cluster_start"] > 0 and warmed["warm_up"] > 0 and "warm_models" in warmed
    assert warmed["overlapped"] >= warmed["cluster_start"]
    assert result.leader and int(result.params["models_trained"]) >= 1
    # its models learnt the easy rule
    assert result.cv_metrics["cv_auc"] > 0.8, result.cv_metrics
    wait_for_shutdowns()
    assert not _cloud_running(name)


def test_a_warm_cluster_nobody_took_is_shut_down() -> None:
    engine = H2OAutoMLEngine(H2OSettings(**SETTINGS))
    with pytest.raises(RuntimeError, match="the rows could not be prepared"):
        with engine.warm_start(BUDGET):
            warm = engine._warm
            assert warm is not None
            name = _started(warm)
            assert _cloud_running(name)
            raise RuntimeError("the rows could not be prepared")
    assert engine._warm is None
    wait_for_shutdowns()
    assert not _cloud_running(name)


def test_no_early_cluster_when_warm_start_is_off_or_the_cluster_is_remote() -> None:
    engine = H2OAutoMLEngine(H2OSettings(**SETTINGS, warm_start=False))
    with engine.warm_start(BUDGET):
        assert engine._warm is None
    remote = H2OAutoMLEngine(H2OSettings(**SETTINGS))
    remote.cluster = object()  # a config.H2OClusterSpec: the cluster is not ours to start
    with remote.warm_start(BUDGET):
        assert remote._warm is None
