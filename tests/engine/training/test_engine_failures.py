"""An engine that raises, is killed or overruns becomes a failed candidate, not a failed run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from autokfp.errors import TrainingError
from autokfp.steps import train_model as train_step
from autokfp.training.isolation import (
    CANDIDATE_FILE,
    EngineFailure,
    read_candidate_marker,
    run_isolated,
    write_candidate_marker,
)
from tests.conftest import small_config

# the child process imports these helpers by module path (it starts in the repository root)
HERE = "tests.engine.training.test_engine_failures"


# functions the child process runs (importable by module path)
def raise_memory_error(size: int) -> None:
    raise MemoryError(f"could not allocate {size} bytes")


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def answer(value: int) -> dict:
    return {"value": value * 2}


def leave_a_jvm_behind(marker: str) -> None:
    """Start a stand-in for H2O's JVM in a session of its own, note its pid, then die."""
    import subprocess

    from autokfp.training.isolation import CHILD_PIDS_ENV

    jvm = subprocess.Popen(["bash", "-c", "exec -a h2o-stand-in sleep 120"],
                           start_new_session=True)
    with open(os.environ[CHILD_PIDS_ENV], "a") as handle:
        handle.write(f"{jvm.pid}\n")
    Path(marker).write_text(str(jvm.pid))
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def test_isolated_call_returns_the_result() -> None:
    assert run_isolated(f"{HERE}:answer", {"value": 21}) == {"value": 42}


def test_an_exception_in_the_child_comes_back_with_its_message() -> None:
    with pytest.raises(EngineFailure, match="MemoryError: could not allocate 99 bytes") as info:
        run_isolated(f"{HERE}:raise_memory_error", {"size": 99})
    assert info.value.kind == "error"


def test_a_killed_child_is_reported_as_probably_out_of_memory() -> None:
    with pytest.raises(EngineFailure, match="SIGKILL.*out-of-memory") as info:
        run_isolated(f"{HERE}:kill_myself", {})
    assert info.value.kind == "killed"


def test_processes_the_child_started_elsewhere_are_stopped_too(tmp_path) -> None:
    marker = tmp_path / "pid"
    with pytest.raises(EngineFailure, match="SIGKILL"):
        run_isolated(f"{HERE}:leave_a_jvm_behind", {"marker": str(marker)})
    pid = int(marker.read_text())
    for _ in range(50):  # reparented to init, which reaps it once killed
        if not Path(f"/proc/{pid}").exists() or b"h2o-stand-in" not in Path(
                f"/proc/{pid}/cmdline").read_bytes():
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the stand-in JVM was left running")


def test_a_child_that_overruns_is_stopped() -> None:
    started = time.monotonic()
    with pytest.raises(EngineFailure, match="more than 2s") as info:
        run_isolated(f"{HERE}:sleep_for", {"seconds": 60}, timeout=2)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 30


def test_marker_replaces_a_half_written_model(tmp_path) -> None:
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "MLmodel").write_text("half")
    write_candidate_marker(folder, "h2o", "failed", "boom")
    assert sorted(p.name for p in folder.iterdir()) == [CANDIDATE_FILE]
    assert read_candidate_marker(folder)["reason"] == "boom"
    assert read_candidate_marker(tmp_path) is None


# --------------------------------------------------------------------- the train stage


@pytest.fixture
def config(tmp_path):
    return small_config(tmp_path)


def test_failing_engine_writes_a_failed_candidate_when_tolerated(config, tmp_path,
                                                                  monkeypatch) -> None:
    import dataclasses

    from autokfp import engine_registry as registry

    class Exploding:
        name = "h2o"

        def __init__(self, settings):
            self.settings = settings

        def train(self, *args, **kwargs):
            raise MemoryError("Java heap space")

    spec = registry.engine_spec("h2o")
    monkeypatch.setitem(registry._ENGINES, "h2o", dataclasses.replace(spec, engine=Exploding))
    train = tmp_path / "train.parquet"
    plan = tmp_path / "plan.json"
    _tiny_inputs(train, plan)
    model, board = tmp_path / "model", tmp_path / "board.html"
    summary = train_step.train_model(config, str(train), str(plan), str(model), str(board),
                                 engine="h2o", tolerate_failure=True)
    assert summary["status"] == "failed"
    assert "MemoryError: Java heap space" in summary["reason"]
    marker = json.loads((model / CANDIDATE_FILE).read_text())
    assert marker["status"] == "failed" and marker["engine"] == "h2o"
    assert "Java heap space" in board.read_text()
    # without tolerance the error is the caller's
    with pytest.raises(MemoryError):
        train_step.train_model(config, str(train), str(plan), str(tmp_path / "m2"), engine="h2o")


def test_isolated_engine_failure_is_a_failed_candidate(config, tmp_path) -> None:
    missing = tmp_path / "no-such-train.parquet"
    model = tmp_path / "model"
    summary = train_step.train_model(config, str(missing), str(tmp_path / "plan.json"), str(model),
                                 engine="autokeras", isolate=True, tolerate_failure=True)
    assert summary["status"] == "failed"
    assert "no-such-train.parquet" in summary["reason"]
    assert read_candidate_marker(model)["status"] == "failed"
    with pytest.raises(TrainingError, match="autokeras training failed"):
        train_step.train_model(config, str(missing), str(tmp_path / "plan.json"),
                           str(tmp_path / "m2"), engine="autokeras", isolate=True)


def test_engine_left_out_of_the_config_is_skipped(tmp_path) -> None:
    config = small_config(tmp_path, engines=["h2o"])
    model = tmp_path / "model"
    summary = train_step.train_model(config, "unused", "unused", str(model), engine="autokeras",
                                 isolate=True, tolerate_failure=True)
    assert summary["status"] == "skipped"
    assert read_candidate_marker(model)["reason"].startswith("'autokeras' is not in")


def _tiny_inputs(train: Path, plan: Path) -> None:
    import pandas as pd

    from autokfp.modeling.features import FeaturePlan

    pd.DataFrame({"x": range(40), "y": [0, 1] * 20}).to_parquet(train)
    plan.write_text(FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=["x"]).to_json())


def test_an_empty_training_file_is_named_by_the_engine(config, tmp_path) -> None:
    """H2O trains from a feature file written batch by batch; a training file with no rows
    has no batch at all: the engine's own check names the row count (before: a bare
    StopIteration with no message)."""
    import pandas as pd

    from autokfp.modeling.features import FeaturePlan

    train, plan = tmp_path / "train.parquet", tmp_path / "plan.json"
    pd.DataFrame({"x": pd.Series([], dtype="float64"),
                  "y": pd.Series([], dtype="int64")}).to_parquet(train)
    plan.write_text(FeaturePlan(target="y", task="binary", classes=[0, 1], numeric=["x"]).to_json())
    with pytest.raises(TrainingError, match="at least 10 training rows, got 0"):
        train_step.train_model(config, str(train), str(plan), str(tmp_path / "model"),
                               engine="h2o")
