"""Fault injection: ``kill -9`` of real H2O training at its writes (see ``killed_step.py``).

The killed process runs ``train_model`` with the engine in-process: the code the training
task's isolated child runs (``train_candidate`` -> ``run_isolated``), so a kill here is the
out-of-memory killer ending that child while it writes the model package. (A kill of the
task itself, and the engine tree it leaves, is ``test_interrupts``.) Each process is forked
from one warm worker (``StepWorker``) that imported the step once.

The H2O cluster is one JVM for the module (``H2OCluster``, started by the ``stage``
fixture outside the steps' home) named in ``training.h2o_cluster``, as in a namespace that
runs one: every step joins it and starts no JVM of its own (each started one, six to eight
a module, 6-13 s each here, before session 16), so a kill leaves the cluster running for
the next step. After each run, ``_stop_jvms`` kills any JVM a process of the steps' home
did start, as the task's supervisor does (none while the steps join the cluster). What is
killed and checked, the package's writes, is the same either way; the training task's own
JVM and its supervisor are test_interrupts' subject.

A first full run writes a package; then each cycle trains into the same output folder,
which holds the previous cycle's package, as a retry in the same folder does, and the step
kills itself just before one of its writes: the package half written in its staging
folder, with the old package moved aside and the new one not yet in place, with the new one
in place and the old one being removed (``CORE_POINTS``, what ``make test`` runs); with
``AUTOKFP_ALL_KILL_POINTS=1`` also the package's first file, the old package about to be
moved aside, and the leaderboard not yet written (``KILL_POINTS``).

After each kill the output folder is either absent or a whole package that loads and
scores held-out rows (probabilities in [0, 1], its metadata naming the H2O leader), never a
half-written one. The rerun after it writes a whole package, of its own (another hash than
the last whole one), with no temporary folder left beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.faults import StepWorker, kill_points, step_home

pytestmark = pytest.mark.slow  # 7 trainings (3 kills and reruns by default): minutes



@dataclass
class Stage:
    root: Path
    home: Path
    env: dict[str, str]
    config: dict
    train: Path
    test: Path
    plan: Path
    worker: StepWorker


def _jvms(home: Path) -> list[int]:
    """Live H2O JVMs started by a process of this home (they inherit its environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"java" in cmdline and b"AUTOKFP_HOME=" + os.fsencode(home) in environ:
            found.append(int(entry.name))
    return found


def _stop_jvms(home: Path) -> None:
    """What the training task's supervisor does once its engine child died."""
    for pid in _jvms(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _jvms(home) and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stage(tmp_path_factory, churn_frame):
    import shutil
    import tempfile

    import h2o

    from autokfp.catalog.profiling import profile_frame
    from autokfp.steps import engineer_features as engineer_features_step
    from autokfp.training.h2o_automl import H2OCluster
    from tests.conftest import small_config

    root = tmp_path_factory.mktemp("killed-train")
    home, folder = root / "home", root / "data"
    folder.mkdir()
    frame = churn_frame.head(600)
    frame.to_parquet(folder / "customers.parquet", index=False)
    config = small_config(folder, engines=["h2o"])
    config_dict = config.to_dict()
    config_dict["engines"]["h2o"].update(max_models=2, nfolds=2, include_algos=["GLM"])
    config_dict["budget"]["max_runtime_secs"] = 10
    # started outside the steps' home: _stop_jvms (the supervisor's part) leaves it running;
    # the frames it imports written under the system's temporary folder (H2O refuses to read
    # under a hidden folder, e.g. a --basetemp in .cache/)
    cluster = H2OCluster(nthreads=-1, max_mem_size="2G")
    imports = tempfile.mkdtemp(prefix="autokfp-killed-train-")
    with cluster, step_home(root) as env, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, imports, True)
        config_dict["training"]["h2o_cluster"] = {"url": h2o.connection().base_url,
                                                  "import_root": imports}
        schema = profile_frame(frame, "files/customers.parquet", "file", str(folder))
        (root / "schema.json").write_text(schema.to_json())
        frame.to_parquet(root / "dataset.parquet", index=False)
        engineer_features_step.engineer_features(
            config, root / "dataset.parquet", root / "schema.json", root / "train.parquet",
            root / "test.parquet", root / "plan.json")
        worker = StepWorker(env, ["autokfp.steps.train_model", "h2o"])
        try:
            yield Stage(root, home, env, config_dict, root / "train.parquet",
                        root / "test.parquet", root / "plan.json", worker)
        finally:
            worker.close()
            _stop_jvms(home)


def _out(stage: Stage) -> Path:
    return stage.root / "out"


def _run(stage: Stage, n: int, kill_on: tuple[str, str, int] | None = None
         ) -> tuple[int, list[tuple[str, str]]]:
    """Training for cycle ``n``, killed at ``kill_on`` (kind, text in the target, n-th)."""
    name = "killed" if kill_on else "full"
    events = stage.root / f"events-{n}-{name}.txt"
    spec = stage.root / f"spec-{n}-{name}.json"
    spec.write_text(json.dumps({
        "kill_at": 0, "kill_on": kill_on, "roots": [str(stage.home), str(_out(stage))],
        "events": str(events),
        "call": "autokfp.steps.train_model:train_model",
        "kwargs": {"config": stage.config, "train_path": str(stage.train),
                   "plan_path": str(stage.plan), "model_path": str(_out(stage) / "model"),
                   "leaderboard_path": str(_out(stage) / "leaderboard.html"), "engine": "h2o"}}))
    done = stage.worker.run(spec, timeout=900)
    _stop_jvms(stage.home)
    if not kill_on:
        assert done.returncode == 0, done.stderr[-3000:]
    points = [tuple(line.split("\t")[1:3]) for line in events.read_text().splitlines()
              if "\t" in line]
    return done.returncode, points  # type: ignore[return-value]


def _assert_whole_or_absent(stage: Stage, required: bool = False) -> str | None:
    """The output folder: absent, or a package that loads and scores the held-out rows;
    returns its package hash."""
    from autokfp.modeling import registry
    from autokfp.modeling.model_package import load_model_package

    model = _out(stage) / "model"
    leftovers = [p.name for p in _out(stage).iterdir()
                 if p.name.startswith((".model", ".autokfp-tmp-"))]
    if not model.exists():
        assert not required, "no package after a full run"
        return None
    package = load_model_package(str(model))
    rows = pd.read_parquet(stage.test).drop(columns=["churned"]).head(20)
    scored = package.predict(rows)
    assert len(scored) == 20 and scored["probability_1"].between(0, 1).all()
    meta = json.loads((model / "artifacts" / "meta.json").read_text())
    assert meta["engine"] == "h2o" and meta["leader"], meta
    if required:
        assert not leftovers, f"temporary folders left beside the package: {leftovers}"
    return registry.package_hash(model)


# where to kill: (kind of write, text in its target, n-th such write)
KILL_POINTS = {
    "the package's first file": ("open-for-write", "/out/.model.", 1),
    "the package half written in its staging folder": ("open-for-write", "/out/.model.staging/MLmodel", 1),
    "the old package about to be moved aside": ("os.rename", "old.model", 1),
    "the old package aside, the new one not yet in place": ("os.rename", "/out/model", 1),
    # the first removal of that name clears a stale one before the move
    "the new package in place, the old one being removed": ("shutil.rmtree", "old.model", 2),
    "the leaderboard not yet written": ("open-for-write", "/out/.leaderboard", 1),
}


# what make test runs (AUTOKFP_ALL_KILL_POINTS=1: all six): half a package staged, the old
# one moved aside with the new one not yet in place, and the old one half removed
CORE_POINTS = ["the package half written in its staging folder",
               "the old package aside, the new one not yet in place",
               "the new package in place, the old one being removed"]


def test_kill_9_of_training_never_leaves_a_half_written_package(stage):
    _run(stage, 0)  # the first package
    packages = [_assert_whole_or_absent(stage, required=True)]
    points = kill_points(KILL_POINTS, CORE_POINTS)
    for n, (where, kill_on) in enumerate(points.items(), start=1):
        code, reached = _run(stage, n, kill_on=kill_on)
        assert code == -9, f"{where}: the step was not killed (exit {code})"
        assert reached[-1][0] == kill_on[0] and kill_on[1] in reached[-1][1], (where, reached[-1])
        _assert_whole_or_absent(stage)

        _run(stage, n)  # the retry: it replaces the package there (the last whole one)
        packages.append(_assert_whole_or_absent(stage, required=True))
        assert packages[-1] != packages[-2]  # a package of its own
