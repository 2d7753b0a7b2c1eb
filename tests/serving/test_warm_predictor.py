"""The local predictor forked by a run's warm process (``autokfp.serving.warm_predictor``).

The warm process here imports only the predictor's entry module (the real one imports the
whole serving stack: seconds that test nothing more); the predictor it forks runs
``python -m autokfp.serving``'s ``main`` on a model folder that does not exist, so it
imports what it needs itself, says why it cannot serve, and exits: the fork, its
environment, its log and its independence from the run are what is checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from autokfp import lifeline
from autokfp.serving import deployment, warm_predictor
from autokfp.serving.warm_predictor import WARM_ENV, ForkedPredictor, warm_predictors

LIGHT = ("autokfp.serving.__main__",)


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_deploy_step_gets_its_predictor_forked_by_the_warm_process(tmp_path, monkeypatch):
    monkeypatch.delenv(WARM_ENV, raising=False)
    missing = tmp_path / "no-such-model"
    log_file = tmp_path / "serve.log"
    with warm_predictors(preload=LIGHT) as warm:
        assert warm is not None and os.environ[WARM_ENV] == warm.address
        warm.start()
        server, process = deployment.LocalServing(tmp_path / "serving").start(
            "wine", "7", str(missing), log_file=log_file)
        # forked by the warm process (no new interpreter), and nobody's child in this run:
        # it outlives the run as a new interpreter would
        assert isinstance(process, ForkedPredictor) and server.pid == process.pid
        with pytest.raises(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        assert os.getsid(process.pid) not in (os.getsid(0), warm._process.pid)
        # it ran the predictor's main with the step's environment, its output in the log
        assert process.wait(timeout=60) is not None
    text = log_file.read_text()
    assert f"model in {missing} could not be loaded" in text, text[-2000:]
    assert WARM_ENV not in os.environ
    assert not Path(warm.address).parent.exists()  # the socket's folder is removed


def test_without_a_warm_process_the_predictor_is_a_new_interpreter(tmp_path, monkeypatch):
    # named but never started (a run whose engines did not finish), then switched off
    with warm_predictors(preload=LIGHT) as warm:
        assert warm is not None
        assert warm_predictor.fork_predictor(dict(os.environ), None) is None
    monkeypatch.setenv(WARM_ENV, "0")
    with warm_predictors(preload=LIGHT) as warm:
        assert warm is None
        _, process = deployment.LocalServing(tmp_path / "serving").start(
            "wine", "1", str(tmp_path / "none"), log_file=tmp_path / "serve.log")
        assert isinstance(process, subprocess.Popen)
        assert process.wait(timeout=60) != 0


def test_a_forked_predictor_keeps_serving_while_the_step_that_started_it_runs(tmp_path):
    """The serving watch of a predictor that is not the deploy step's child (forked by the
    warm process): it stops only once the step is gone and the state does not name it."""
    state = tmp_path / "wine.json"
    state.write_text(json.dumps({"pid": 1}))  # names another server: a candidate's case
    step = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    script = textwrap.dedent(f"""
        import os, sys, time
        if os.fork():  # the predictor is its grandchild, as the warm process makes it
            os._exit(0)
        os.environ["{lifeline.SERVING_STATE_ENV}"] = {str(state)!r}
        os.environ["{lifeline.SERVING_PARENT_ENV}"] = "{step.pid}"
        from autokfp.lifeline import watch_serving_state
        assert watch_serving_state()
        print(os.getpid(), flush=True)
        time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    predictor = int(runner.stdout.readline())  # the grandchild's; the runner exited
    runner.wait()
    runner.stdout.close()
    try:
        time.sleep(4 * lifeline.POLL_SECS)
        assert lifeline.pid_alive(predictor)  # the step runs: the candidate is kept
        step.kill()
        step.wait()
        assert _wait(lambda: not lifeline.pid_alive(predictor), 15)  # then it stops
    finally:
        step.kill()
        step.wait()
        if lifeline.pid_alive(predictor):
            os.kill(predictor, signal.SIGKILL)


def test_kill_9_of_the_runner_ends_the_warm_process_and_leaves_no_socket(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from autokfp.serving.warm_predictor import warm_predictors
        with warm_predictors(preload={LIGHT!r}) as warm:
            warm.start()
            print(warm._process.pid, warm.address, flush=True)
            time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, address = runner.stdout.readline().split()
        assert _wait(lambda: os.path.exists(address), 30)
        runner.kill()
        runner.wait()
        assert _wait(lambda: not lifeline.pid_alive(int(pid)), 10)
        assert _wait(lambda: not Path(address).parent.exists(), 5)
    finally:
        runner.kill()
        runner.wait()


def _forked_predictors_hang(tmp_path: Path, monkeypatch) -> None:
    """The warm process preloads ``hang_forked_predictor``: a predictor it forks waits for
    good before it is ready, using no CPU time."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "hang_forked_predictor.py").write_text(textwrap.dedent("""
        import threading

        import autokfp.serving.__main__ as entry


        def main(argv):
            threading.Event().wait()  # never ready, and no CPU time


        entry.main = main
    """))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]))


def _import_the_readiness_client() -> None:
    """kserve's REST client, which the readiness wait (``PredictorClient``) imports on its
    first use, imported before a test times the wait: 1.35 CPU-s, 25 s wall at load 24, so
    where no earlier test of the worker imported it, the timed wait held a one-time import
    (the bound of 10 s waited + the stop was measured at 22-41 s, three of three runs)."""
    from kserve import InferenceRESTClient, RESTConfig  # noqa: F401


def test_a_forked_predictor_that_hangs_before_it_is_ready_starts_as_a_new_interpreter(
        tmp_path, monkeypatch):
    """A predictor the warm process forked that makes no progress before it is ready (here
    its main waits for good, as a fork waiting on a lock held at the fork would) is stopped
    once AUTOKFP_CHILD_STALL_SECS pass, and the version starts again as a new interpreter on
    the same port: the deploy step goes on, bounded, instead of failing its readiness."""
    _forked_predictors_hang(tmp_path, monkeypatch)
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "1.5")
    monkeypatch.delenv(WARM_ENV, raising=False)
    log_file = tmp_path / "serve.log"
    serving = deployment.LocalServing(tmp_path / "serving")
    with warm_predictors(preload=(*LIGHT, "hang_forked_predictor")) as warm:
        assert warm is not None
        warm.start()
        server, process = serving.start("wine", "7", str(tmp_path / "no-such-model"),
                                        log_file=log_file)
        assert isinstance(process, ForkedPredictor)
        _import_the_readiness_client()
        started = time.monotonic()
        again, restarted = serving.ready_or_restarted(server, process, 60, log_file)
        seconds = time.monotonic() - started
    try:
        assert isinstance(restarted, subprocess.Popen), restarted
        assert restarted.args[1:] == ["-m", "autokfp.serving"]
        assert again.port == server.port and again.pid == restarted.pid != process.pid
        assert not lifeline.pid_alive(process.pid)  # the hung fork is stopped
        assert 1.5 <= seconds < 30, seconds
    finally:
        serving.stop(again, timeout=5)


def test_a_predictor_never_ready_fails_the_local_rollout_after_the_configured_time_once(
        tmp_path, monkeypatch):
    """The local target waits for readiness ``deploy.ready_timeout_secs`` in all: the wait
    for a forked predictor (``ready_or_restarted``) and ``verify_endpoint``'s share one
    deadline (each waited the whole time before: 20 s here). The predictor hangs with no
    CPU time and the stall bound is longer than the test, so it is never restarted."""
    import pandas as pd

    from autokfp.serving.targets.base import Release
    from autokfp.serving.targets.local import LocalTarget
    from tests.conftest import small_config

    _forked_predictors_hang(tmp_path, monkeypatch)
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "600")
    monkeypatch.delenv(WARM_ENV, raising=False)
    config = small_config(tmp_path, deploy={"target": "local", "ready_timeout_secs": 10})
    target = LocalTarget(config, SimpleNamespace(home=tmp_path, artifact_root=None))
    release = Release(service="wine", version="7", model_dir=str(tmp_path / "no-model"),
                      manifest={}, canary=False)
    rows = pd.DataFrame({"x": [1.0]})
    with warm_predictors(preload=(*LIGHT, "hang_forked_predictor")) as warm:
        assert warm is not None
        warm.start()
        target.start(release)
        pid = target._started[2].pid
        _import_the_readiness_client()
        waits = _record_the_ready_waits(monkeypatch)
        started = time.monotonic()
        result = target.roll_out(release, rows, rows.assign(prediction=0))
        seconds = time.monotonic() - started
    assert not result.passed
    assert result.checks[0]["check"] == "ready" and not result.checks[0]["passed"], result.checks
    assert "not ready within 10s" in result.checks[0]["detail"], result.checks
    assert _wait(lambda: not lifeline.pid_alive(pid), 20)  # the never-ready server is stopped
    # one shared deadline, told by what each wait was given, not by the wall clock (a loaded
    # machine adds seconds after the deadline: verify's last check, the stop): the fork's
    # wait got the whole 10 s, and verify_endpoint's readiness wait only what was left of
    # the 10 s counted from before the first wait (the behaviour this replaced gave it
    # another 10 s: 20 s in all)
    (first_at, first_timeout), (second_at, second_timeout) = waits
    assert first_timeout == 10, waits
    assert second_timeout <= max(0.0, first_at + 10 - second_at) + 1e-6, waits
    assert second_at - first_at >= 10 - 1e-6, waits  # the first wait used its whole share
    assert seconds >= 10, seconds  # and nothing failed before the deadline


def _record_the_ready_waits(monkeypatch) -> list[tuple[float, float]]:
    """(monotonic time of the call, timeout given) of each readiness wait of a local roll
    out: ``LocalServing.ready_or_restarted`` (the forked predictor's) and
    ``deployment.wait_ready`` (verify_endpoint's)."""
    waits: list[tuple[float, float]] = []
    ready_or_restarted, wait_ready = deployment.LocalServing.ready_or_restarted, \
        deployment.wait_ready

    def first(self, server, process, timeout, *args, **kwargs):
        waits.append((time.monotonic(), timeout))
        return ready_or_restarted(self, server, process, timeout, *args, **kwargs)

    def second(base_url, service, timeout, *args, **kwargs):
        waits.append((time.monotonic(), timeout))
        return wait_ready(base_url, service, timeout, *args, **kwargs)

    monkeypatch.setattr(deployment.LocalServing, "ready_or_restarted", first)
    monkeypatch.setattr(deployment, "wait_ready", second)
    return waits
