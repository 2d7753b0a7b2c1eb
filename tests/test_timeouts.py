"""The per-test time limit (pyproject.toml's pytest-timeout settings, tests/timeouts.py): a
hung test is stopped, named and its processes killed, the run goes on; under xdist too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from autokfp.lifeline import pid_alive

ROOT = Path(__file__).resolve().parents[1]

# A test that hangs waiting on a child which started a grandchild in a session of its own
# (as a server or a JVM does), after a module fixture started a process of its own (a
# fixture's server, which the guard must leave to the fixture); the same where the alarm
# cannot reach the test (HUNG_UNREACHABLE); then a test that passes.
HUNG = '''
import os, signal, subprocess, sys
from pathlib import Path
import pytest

OUT = Path(os.environ["HUNG_OUT"])
CHILD = ("import subprocess, sys, time; "
         "g = subprocess.Popen(['sleep', '300'], start_new_session=True); "
         "open(sys.argv[1], 'w').write(str(g.pid)); time.sleep(300)")


@pytest.fixture(scope="module")
def server():
    process = subprocess.Popen(["sleep", "300"])
    yield process
    (OUT / f"server-alive-at-teardown-{os.getpid()}").write_text(str(process.poll() is None))
    process.kill()
    process.wait()


def hang(name):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(OUT / f"grandchild-{name}")],
                             start_new_session=True)
    (OUT / f"child-{name}").write_text(str(child.pid))
    child.wait()


def test_hangs(server):
    hang("reachable")


@pytest.mark.skipif(not os.environ.get("HUNG_UNREACHABLE"), reason="the backstop's run only")
def test_hangs_where_the_alarm_cannot_reach(server):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    hang("unreachable")


@pytest.fixture
def hanging_fixture():
    hang("fixture")
    yield


@pytest.mark.skipif(not os.environ.get("HUNG_FIXTURE"), reason="the one-process run only")
def test_whose_fixture_hangs(hanging_fixture):
    pass


def test_after_it(server):
    assert server.poll() is None
'''


# The inner runs' hung tests are stopped at 4 s (+2 s of backstop grace); the rest is pytest
# (and xdist's two workers) importing tests.conftest, 11.5 s for the one-process run at load
# ~12 (013a210) and more at load 20+. A guard that does not stop them runs into _run's 120 s
# subprocess limit: 100 s (was 60) still fails it, with room for a loaded machine.
STOPPED_WITHIN = 100


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> tuple[str, int, float, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "test_hung.py").write_text(HUNG)
    started = time.monotonic()
    # this repository's settings (-c pyproject.toml) and conftest (the guard's registration)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-o", "timeout=4", *args, str(tmp_path / "test_hung.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HUNG_OUT": str(out), **(env or {})})
    return result.stdout + result.stderr, result.returncode, time.monotonic() - started, out


def _assert_gone(out: Path, name: str) -> None:
    for kind in ("child", "grandchild"):  # the grandchild leads a session of its own
        pid = int((out / f"{kind}-{name}").read_text())
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid), f"the {kind} of the {name} hang was left running"


def _assert_stopped_in_the_test(output: str, out: Path) -> None:
    assert "FAILED test_hung.py::test_hangs - Failed: Timeout (>4.0s)" in output, output
    assert "processes killed after the timeout (call)" in output, output
    _assert_gone(out, "reachable")
    # what a fixture had started before the test is left to its teardown
    alive = [path.read_text() for path in out.glob("server-alive-at-teardown-*")]
    assert alive and set(alive) == {"True"}, output


def test_the_suite_has_a_time_limit_that_raises_in_the_test(request) -> None:
    from tests.timeouts import SLOW_FACTOR, item_timeout, slow_timeout

    assert float(request.config.getini("timeout")) >= 300
    # "thread" ends the process: no teardown
    assert request.config.getini("timeout_method") == "signal"
    assert item_timeout(request.node) == float(request.config.getini("timeout"))
    assert SLOW_FACTOR > 1
    assert slow_timeout(request.config) == SLOW_FACTOR * item_timeout(request.node)


class _Item:
    def __init__(self, *marks: pytest.MarkDecorator, config=None) -> None:
        self.marks = [mark.mark for mark in marks]
        self.config = config

    def get_closest_marker(self, name: str):
        return next((mark for mark in self.marks if mark.name == name), None)

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.mark)


def test_slow_tests_get_the_longer_limit_unless_they_name_their_own(request) -> None:
    from tests.timeouts import TimeoutGuard, slow_timeout

    config = request.config
    slow = _Item(pytest.mark.slow, config=config)
    own = _Item(pytest.mark.slow, pytest.mark.timeout(60), config=config)
    quick = _Item(config=config)
    for item in (slow, own, quick):
        TimeoutGuard().pytest_itemcollected(item)
    assert slow.get_closest_marker("timeout").args == (slow_timeout(config),)
    assert own.get_closest_marker("timeout").args == (60,)
    assert quick.get_closest_marker("timeout") is None


class _Config:
    """The two questions pytest-timeout asks of a run's config, for a run given ``--timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def getvalue(self, name: str):
        return {"timeout": self.timeout}.get(name)

    def getini(self, name: str):
        return {"timeout": "600", "timeout_method": "signal"}.get(name, False)


@pytest.mark.parametrize("option, limit", [(0, None), (3600, 7200.0)])
def test_the_command_line_limit_governs_the_slow_tests_too(option, limit) -> None:
    """A timeout mark overrides the command line, so the slow tests' mark follows the run's
    limit: ``--timeout=0`` (the Makefile's way to lift the limits) lifts theirs too, and
    scripts/test_cluster.sh's ``--timeout 3600`` does not cut a slow test to less."""
    from tests.timeouts import TimeoutGuard

    slow = _Item(pytest.mark.slow, config=_Config(option))
    TimeoutGuard().pytest_itemcollected(slow)
    mark = slow.get_closest_marker("timeout")
    if limit is None:
        assert mark is None, mark
    else:
        assert mark is not None and mark.args == (limit,), mark


def test_the_backstop_leaves_a_debugging_session_alone(monkeypatch) -> None:
    """pytest-timeout's alarm does nothing while pdb holds the test (and ``--pdb``'s
    post-mortem cancels it): the backstop must not end that process either."""
    import threading

    import pytest_timeout

    from tests import timeouts

    done: list[object] = []
    monkeypatch.setattr(timeouts, "kill_new_descendants", lambda *a, **k: done.append("kill") or [])
    monkeypatch.setattr(timeouts.os, "_exit", done.append)
    # (this process's own: once set, its reports would wait for an end that never comes)
    monkeypatch.setattr(timeouts, "_ENDING", threading.Event())
    monkeypatch.setattr(pytest_timeout, "SUPPRESS_TIMEOUT", True)  # what pdb's entry sets
    timeouts._backstop("test_x.py::test_held", 1.0)
    assert done == [] and not timeouts._ENDING.is_set()
    monkeypatch.setattr(pytest_timeout, "SUPPRESS_TIMEOUT", False)
    try:
        timeouts._backstop("test_x.py::test_held", 1.0)  # no debugger: the process is ended
        assert done == ["kill", 1]
        assert timeouts._ENDING.is_set()  # the test's own reports wait for the end meanwhile
    finally:  # before this test's own report (made before monkeypatch's undo), which waits
        timeouts._ENDING.clear()

    # a failure (the timeout's own) leaves the backstop to end a teardown that hangs
    # after it; --pdb's post-mortem on that failure stops it
    for pdb in (False, True):
        guard = timeouts.TimeoutGuard()
        guard._backstop = threading.Timer(600, done.append, ("backstop",))
        node = SimpleNamespace(config=SimpleNamespace(getoption=lambda name, default=None,
                                                      pdb=pdb: pdb if name == "usepdb" else default))
        guard.pytest_exception_interact(node=node)
        assert guard._backstop.finished.is_set() == pdb


def test_a_hung_test_is_stopped_named_and_its_processes_killed(tmp_path) -> None:
    output, code, seconds, out = _run(tmp_path, "-n", "0", env={"HUNG_FIXTURE": "1"})
    assert code == 1, output
    _assert_stopped_in_the_test(output, out)
    # a fixture that hangs: the test errors at setup, what the fixture started is killed
    assert "ERROR test_hung.py::test_whose_fixture_hangs - Failed: Timeout (>4.0s)" in output
    assert "processes killed after the timeout (setup)" in output, output
    _assert_gone(out, "fixture")
    assert "1 failed, 1 passed, 1 skipped, 1 error" in output, output
    assert seconds < STOPPED_WITHIN, output


def test_under_xdist_and_where_the_alarm_cannot_reach_the_test(tmp_path) -> None:
    """In xdist's workers the alarm reaches the test as in one process (the run goes on in
    the same worker); a test it cannot reach is ended with its worker by the backstop, and
    xdist names it and goes on with a new worker."""
    output, code, seconds, out = _run(tmp_path, "-n", "2",
                                      env={"HUNG_UNREACHABLE": "1",
                                           "AUTOKFP_TIMEOUT_BACKSTOP_GRACE": "2"})
    assert code == 1, output
    _assert_stopped_in_the_test(output, out)
    assert "crashed while running 'test_hung.py::test_hangs_where_the_alarm_cannot_reach'" \
        in output, output
    # one worker crashed, the one of that test: xdist's own line for each crash (the short
    # summary repeats it after "FAILED ... - " when the terminal is wide enough, as in CI)
    crashed = re.findall(r"^\s*worker '[^']+' crashed while running '([^']+)'", output, re.M)
    assert crashed == ["test_hung.py::test_hangs_where_the_alarm_cannot_reach"], output
    assert "2 failed, 1 passed" in output, output
    _assert_gone(out, "unreachable")
    assert seconds < STOPPED_WITHIN, output
