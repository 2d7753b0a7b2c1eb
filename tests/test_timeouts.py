"""The per-test time limit (pyproject.toml's pytest-timeout settings, tests/timeouts.py): a
hung test is stopped, named and its processes killed, the run goes on; under xdist too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_after_it(server):
    assert server.poll() is None
'''


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
    from tests.timeouts import SLOW_TIMEOUT, item_timeout

    assert float(request.config.getini("timeout")) >= 300
    # "thread" ends the process: no teardown
    assert request.config.getini("timeout_method") == "signal"
    assert item_timeout(request.node) == float(request.config.getini("timeout"))
    assert SLOW_TIMEOUT > float(request.config.getini("timeout"))


class _Item:
    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self.marks = [mark.mark for mark in marks]

    def get_closest_marker(self, name: str):
        return next((mark for mark in self.marks if mark.name == name), None)

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.mark)


def test_slow_tests_get_the_longer_limit_unless_they_name_their_own() -> None:
    from tests.timeouts import SLOW_TIMEOUT, TimeoutGuard

    slow, own, quick = _Item(pytest.mark.slow), _Item(pytest.mark.slow, pytest.mark.timeout(60)), _Item()
    for item in (slow, own, quick):
        TimeoutGuard().pytest_itemcollected(item)
    assert slow.get_closest_marker("timeout").args == (SLOW_TIMEOUT,)
    assert own.get_closest_marker("timeout").args == (60,)
    assert quick.get_closest_marker("timeout") is None


def test_a_hung_test_is_stopped_named_and_its_processes_killed(tmp_path) -> None:
    output, code, seconds, out = _run(tmp_path, "-n", "0")
    assert code == 1, output
    _assert_stopped_in_the_test(output, out)
    assert "1 failed, 1 passed, 1 skipped" in output, output
    assert seconds < 60, output


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
    assert output.count("crashed while running") == 1, output
    assert "2 failed, 1 passed" in output, output
    _assert_gone(out, "unreachable")
    assert seconds < 60, output
