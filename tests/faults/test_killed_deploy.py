"""Fault injection: ``kill -9`` of the real ``deploy_model`` step (target ``local``) at its
writes (see ``killed_step.py``).

The step runs in its own process on a real home (MLflow on SQLite, the artifact store, the
audit trail, the local serving state) whose champion is served by a real predictor. A new
version is registered as champion, and the step that rolls it out kills itself with SIGKILL
just before one of its writes: while the model is fetched from the registry, with the new
predictor verified but not yet named in the serving state, with the new one named and the
old one not yet stopped, before the registry's ``deployment`` tag, before the audit event,
before the step's outputs are renamed into place and before the trail's anchor moves. A
first run counts the writes and picks the points.

After each kill: the registry opens and its champion is the new or the old version; the
serving state parses and names a live predictor that answers with its own version; no
predictor is left running that the serving state does not name (a candidate started by the
killed step stops on its own within 10 s); every JSON file in the home parses; the audit
trail verifies. The rerun, as KFP's retry does, recovers: the new version is champion,
serves, answers as itself, and nothing else runs.

The step starts its predictors as a local run's deploy step does: forked by the run's warm
predictor process (``autokfp.serving.warm_predictor``), which imported the serving stack
once; each predictor is a process of its own that watches the step by its pid. (Each was a
new interpreter before session 16, importing KServe and shap again: the path a deploy step
takes with no warm process, tests/serving's.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.faults import StepWorker, kill_points, step_home

pytestmark = pytest.mark.slow  # 7 kills and reruns, each starting a real predictor: minutes

NAME = "churn-test"


@dataclass
class Stage:
    root: Path
    home: Path
    env: dict[str, str]
    config: dict
    model: Path
    test: Path
    worker: StepWorker
    warm_pid: int = 0  # the warm predictor process (not a predictor itself)


def _predictors(home: Path, warm_pid: int = 0) -> dict[int, str]:
    """Every live predictor process started for this home: pid -> its MODEL_VERSION (""
    for one forked by the warm process ``warm_pid``: /proc shows the environment a process
    was started with, its warm parent's)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in
                           (entry / "environ").read_bytes().split(b"\0") if b"=" in item)
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or int(entry.name) == warm_pid \
                or not {b"autokfp.serving", b"autokfp.serving.warm_predictor"} & set(cmdline):
            continue
        if environ.get(b"AUTOKFP_HOME") == os.fsencode(home):
            found[int(entry.name)] = environ.get(b"MODEL_VERSION", b"").decode()
    return found


@pytest.fixture(scope="module")
def stage(trained_package, tmp_path_factory):
    from autokfp.serving import deployment
    from autokfp.serving.warm_predictor import WARM_ENV, warm_predictors

    root = tmp_path_factory.mktemp("killed-deploy")
    home = root / "home"
    config = trained_package.config.to_dict()
    config["deploy"] = {**config.get("deploy", {}), "target": "local", "keep_local_server": True,
                        "local_port": deployment.free_port(), "latency_budget_ms": 2000,
                        "ready_timeout_secs": 120, "smoke_rows": 10}
    # this process registers versions and checks the same home; the steps' predictors are
    # forked by a warm process, as in a local run (started now: it imports while the step
    # worker does)
    with step_home(root) as env, warm_predictors(root / "warm-predictor.log") as warm:
        assert warm is not None, "no warm predictor process here (fork?)"
        env[WARM_ENV] = os.environ[WARM_ENV]
        warm.start()
        warm_pid = warm._process.pid if warm._process is not None else 0
        worker = StepWorker(env, ["autokfp.steps.deploy_model"])
        try:
            yield Stage(root, home, env, config, Path(trained_package.paths.model),
                        Path(trained_package.paths.test), worker, warm_pid)
        finally:
            worker.close()
            for pid in _predictors(home, warm_pid):  # the predictors this test's steps started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _register(stage: Stage, n: int) -> Path:
    """Register candidate ``n`` (the trained package plus one file of its own) as champion."""
    from autokfp.modeling import registry

    package = stage.root / f"candidate-{n}"
    shutil.copytree(stage.model, package)
    (package / "candidate.txt").write_text(f"{n}\n")
    client = registry.configure()
    current = registry.champion_version(client, NAME)
    registered = registry.register_model(
        package, NAME, {"test_auc": 0.8 + n / 1000}, {}, {}, promote=True, decision="test",
        compared_champion=None if current is None else str(current.version))
    path = stage.root / f"registration-{n}.json"
    path.write_text(json.dumps(registered.to_dict()))
    return path


def _run(stage: Stage, n: int, kill_at: int = 0) -> tuple[int, list[tuple[str, str]]]:
    events = stage.root / f"events-{n}-{kill_at}.txt"
    spec = stage.root / f"spec-{n}-{kill_at}.json"
    out = stage.root / "out"
    spec.write_text(json.dumps({
        "kill_at": kill_at, "count_signals": True, "roots": [str(stage.home), str(out)],
        "events": str(events),
        "call": "autokfp.steps.deploy_model:deploy_model",
        "kwargs": {"config": stage.config,
                   "registration_path": str(stage.root / f"registration-{n}.json"),
                   "test_path": str(stage.test), "manifest_path": str(out / f"manifest-{n}.yaml"),
                   "decision_path": str(out / f"decision-{n}.json")}}))
    done = stage.worker.run(spec, timeout=600)
    if kill_at == 0:
        assert done.returncode == 0, done.stderr[-3000:]
    points = [tuple(line.split("\t")[1:3]) for line in events.read_text().splitlines()
              if "\t" in line]
    return done.returncode, points  # type: ignore[return-value]


def _answer(url: str, rows: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/v1/models/{NAME}:predict",
                                     data=json.dumps({"instances": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _rows(stage: Stage) -> list[dict]:
    from autokfp.serving import deployment

    return deployment.to_records(pd.read_parquet(stage.test).drop(columns=["churned"]).head(2))


def _assert_consistent(stage: Stage, versions: set[str]) -> str:
    """The stored and running state after a kill; returns the version the server answers as."""
    from autokfp.governance import audit
    from autokfp.modeling import registry
    from autokfp.serving import deployment

    client = registry.configure()
    champion = str(registry.champion_version(client, NAME).version)
    assert champion in versions, (champion, versions)
    for path in stage.home.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())
    verification = audit.verify_trail()
    assert verification.ok, verification.problems

    serving = deployment.LocalServing(stage.home / "serving")
    server = serving.current(NAME)
    assert server is not None, "nothing serves after the kill"
    assert server.version in versions
    assert _answer(server.url, _rows(stage))["model_version"] == server.version
    # a predictor the serving state does not name stops on its own
    deadline = time.monotonic() + 10
    while set(_predictors(stage.home, stage.warm_pid)) != {server.pid} \
            and time.monotonic() < deadline:
        time.sleep(0.25)
    assert set(_predictors(stage.home, stage.warm_pid)) == {server.pid}, \
        f"predictors left running: {_predictors(stage.home, stage.warm_pid)}, serving: {server}"
    return server.version


def _assert_recovered(stage: Stage, n: int, version: str) -> None:
    from autokfp.governance import audit
    from autokfp.modeling import registry

    assert _assert_consistent(stage, {version}) == version
    client = registry.configure()
    assert str(registry.champion_version(client, NAME).version) == version
    assert client.get_model_version(NAME, version).tags.get("deployment") == "serving"
    decision = json.loads((stage.root / "out" / f"decision-{n}.json").read_text())
    assert decision["outcome"] == "promoted" and decision["version"] == version, decision
    assert audit.events_for(NAME, version, kind="deploy.promoted")


def _nth(kind: str, n: int = 1, target: str = "") -> object:
    def find(points: list[tuple[str, str]]) -> int:
        hits = [i for i, (k, t) in enumerate(points, start=1) if k == kind and target in t]
        return hits[n - 1] if n > 0 else hits[n]
    return find


def _after_naming(points: list[tuple[str, str]]) -> int:
    """The first signal sent once the serving state names the new server: the old one's stop."""
    named = _nth("os.rename", 1, "/serving/")(points)
    return next(i for i, (k, _) in enumerate(points, start=1) if i > named and k == "os.kill")


KILL_POINTS = {
    "the model being fetched from the registry": _nth("open-for-write", 1, "/mlartifacts/"),
    "verified, the serving state being written": _nth("open-for-write", 1, "/serving/"),
    "the new server named, the old one not yet stopped": _after_naming,
    "served, the registry's tag not yet set": _nth("registry.set_model_version_tag", 1),
    "promoted, no audit event yet": _nth("open-for-write", 1, "events.jsonl"),
    "the decision not renamed into place": _nth("os.rename", 1, "/out/decision-"),
    "the trail's anchor not yet moved": _nth("tracking.set_experiment_tag"),
}


# what make test runs (AUTOKFP_ALL_KILL_POINTS=1: all seven): before the switch (the old
# version must serve), the switch itself, and after it with the audit not yet written
CORE_POINTS = ["verified, the serving state being written",
               "the new server named, the old one not yet stopped",
               "promoted, no audit event yet"]


def test_kill_9_of_the_deploy_step_leaves_one_server_and_a_rerun_recovers(stage):
    _register(stage, 1)
    _run(stage, 1)  # the first version serves
    assert _assert_consistent(stage, {"1"}) == "1"
    _register(stage, 2)
    _, counted = _run(stage, 2)  # a full canary: the writes
    assert _assert_consistent(stage, {"2"}) == "2"
    serving = "2"
    points = kill_points(KILL_POINTS, CORE_POINTS)
    for n, (where, find) in enumerate(points.items(), start=3):
        kill_at = find(counted)
        version = _register(stage, n) and str(n)
        code, reached = _run(stage, n, kill_at=kill_at)
        assert code == -9, f"{where}: the step was not killed (exit {code})"
        assert [k for k, _ in reached] == [k for k, _ in counted[:kill_at]], where
        answering = _assert_consistent(stage, {serving, version})
        if kill_at <= _nth("os.rename", 1, "/serving/")(counted):
            assert answering == serving, f"{where}: the old version must still serve"
        else:
            assert answering == version, f"{where}: the new version is named: it serves"
        _run(stage, n)  # the retry
        _assert_recovered(stage, n, version)
        serving = version
