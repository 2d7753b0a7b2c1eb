"""Per-test time limits (pytest-timeout) and what is done when one is exceeded.

pytest-timeout is configured in pyproject.toml (``timeout``: every test, fixtures included;
``timeout_method = "signal"``): SIGALRM raises ``Failed: Timeout (>Ns)`` inside the hung
test, in the main thread, where xdist's workers run their tests too. The test fails and is
named, its ``finally`` blocks and fixture teardowns run (servers stopped, JVMs shut down) and
the run goes on. The ``thread`` method would ``os._exit`` the whole worker instead: no
teardown, so every server and JVM the test had started would be left running.

Two things pytest-timeout does not do, this plugin does:

- **The hung test's processes are killed.** A test waiting on a child (a kfp.local task, a
  predictor, ``autokfp run``) leaves that child running when the wait is interrupted; the
  processes below this one that started since the phase that timed out began (its whole
  tree: each process's children, whatever session they lead) get SIGTERM, then SIGKILL after
  ``KILL_GRACE`` seconds, and the report names them. Processes that were already running
  (session and module fixtures' servers) are left alone.
- **A test the signal cannot stop is stopped all the same.** One alarm per test: a test
  blocked where Python never runs its signal handler (native code that does not return),
  or one whose cleanup hangs after the timeout, would still run to CI's cap. A timer thread
  (``BACKSTOP_GRACE`` seconds after the test's own limit) prints the test's name and every
  thread's stack, kills every process this one started and ends the process (``os._exit``):
  xdist reports the worker crashed "while running" that test and starts another.

Slow tests (marked ``slow``: end-to-end runs of minutes) get ``SLOW_FACTOR`` times the
run's limit (600 s -> 1,200 s) unless they carry a ``timeout`` mark of their own: a mark
overrides the command line, so a fixed figure would keep a 1,200 s limit under
``--timeout=0`` and cut one under ``--timeout=3600``. A debugging session (pdb, ``--pdb``'s
post-mortem, an IDE's tracer) stops the backstop as it stops pytest-timeout's own alarm.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

# The default limit (pyproject.toml's ``timeout``) is 600 s: the slowest phase of any test in
# CI's run of session 14 took 173 s (the monitoring drift test, marked slow) on two idle cores,
# and the quick tests take seconds (the slowest setups build a session's small model: ~100 s).
# Slow tests get twice the run's limit: their runs took up to 613 s here at load 17.
SLOW_FACTOR = 2.0
# seconds a process gets after SIGTERM before SIGKILL
KILL_GRACE = 5.0
# seconds after a test's limit before the backstop ends the process: the test's teardown
# (servers stopped, H2O shut down) runs in between
BACKSTOP_GRACE = float(os.environ.get("AUTOKFP_TIMEOUT_BACKSTOP_GRACE", "120"))
MARK = "Timeout (>"  # how pytest-timeout's failure starts (PYTEST_FAILURE_MESSAGE)


_TICK = os.sysconf("SC_CLK_TCK")
_PID_MAX = int(Path("/proc/sys/kernel/pid_max").read_text()) \
    if Path("/proc/sys/kernel/pid_max").exists() else 1 << 22


@dataclass(frozen=True)
class Moment:
    """When a phase began: seconds since boot (the clock of /proc/PID/stat's start time,
    kept in ticks of 10 ms) and the last process id the kernel had handed out, which tells
    the processes started in that same tick before it from those after it."""

    boottime: float
    last_pid: int

    def started_after(self, pid: int, started: float) -> bool:
        tick = int(self.boottime * _TICK) / _TICK
        if abs(started - tick) > 0.5 / _TICK:  # another tick than the moment's
            return started > tick
        return 0 < (pid - self.last_pid) % _PID_MAX < _PID_MAX // 2  # ids wrap at pid_max


def now() -> Moment:
    try:
        last_pid = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    except (OSError, ValueError):
        last_pid = -1
    return Moment(time.clock_gettime(time.CLOCK_BOOTTIME), last_pid)


EVER = Moment(0.0, -1)  # before every process


def _processes() -> dict[int, tuple[int, float]]:
    """Each live process's (parent, start in seconds since boot), from /proc (zombies left
    out: gone but for their id)."""
    found: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 19 and fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), int(fields[19]) / _TICK)
    return found


def descendants(since: Moment = EVER) -> set[int]:
    """Every live process below this one, however deep, started after ``since``."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid for pid in found if since.started_after(pid, processes[pid][1])}


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return "?"


def kill_new_descendants(since: Moment, grace: float = KILL_GRACE) -> list[str]:
    """SIGTERM every process below this one that started after ``since`` (``now()``),
    SIGKILL what is left after ``grace`` seconds (and what they started meanwhile); returns
    "pid command" of each."""
    found = descendants(since)
    named = [f"{pid} {_command(pid)}" for pid in sorted(found)]
    for pid in found:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = descendants(since)
    for _ in range(3):  # a dying parent may start one more child
        found = descendants(since)
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.1)
    return named


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:  # gone meanwhile, or not ours
        pass


def slow_timeout(config) -> float:
    """The limit of a slow test without a ``timeout`` mark: ``SLOW_FACTOR`` times the run's
    own (pyproject.toml, ``-o timeout=``, ``--timeout``, ``PYTEST_TIMEOUT``); 0 (none) when
    the run has none."""
    import pytest_timeout

    return SLOW_FACTOR * float(pytest_timeout.get_env_settings(config).timeout or 0)


def item_timeout(item) -> float:
    """The limit pytest-timeout applies to ``item`` (0: none)."""
    import pytest_timeout

    return float(pytest_timeout._get_item_settings(item).timeout or 0)


class TimeoutGuard:
    """The plugin (registered by tests/conftest.py)."""

    def __init__(self) -> None:
        self._since: dict[str, Moment] = {}  # when each phase of the running test began
        self._backstop: threading.Timer | None = None

    @pytest.hookimpl
    def pytest_itemcollected(self, item) -> None:
        if item.get_closest_marker("slow") is not None \
                and item.get_closest_marker("timeout") is None:
            limit = slow_timeout(item.config)
            if limit > 0:
                item.add_marker(pytest.mark.timeout(limit))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        limit = item_timeout(item)
        backstop = None
        if limit > 0:
            backstop = threading.Timer(limit + BACKSTOP_GRACE, _backstop,
                                       (item.nodeid, limit))
            backstop.daemon = True
            backstop.name = f"autokfp-timeout-backstop {item.nodeid}"
            backstop.start()
        self._backstop = backstop
        try:
            yield
        finally:
            if backstop is not None:
                backstop.cancel()
            self._backstop = None
            self._since.clear()

    @pytest.hookimpl(tryfirst=True)
    def pytest_exception_interact(self, node) -> None:
        """``--pdb``'s post-mortem holds the test: pytest-timeout stops its alarm here, so the
        backstop stops too. Only under ``--pdb``: pytest calls this hook on every failure,
        the timeout's own among them, and the backstop must still end a teardown that hangs
        after the timeout."""
        if self._backstop is not None and node.config.getoption("usepdb", False):
            self._backstop.cancel()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item) -> None:
        self._since["setup"] = self._since["teardown"] = now()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item) -> None:
        self._since["call"] = now()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        while _ENDING.is_set():  # the backstop ends the process: nothing more of this test
            time.sleep(1)
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is None or MARK not in str(call.excinfo.value):
            return
        since = self._since.get(call.when)
        if since is None:
            return
        killed = kill_new_descendants(since)
        if killed:
            report.sections.append(
                (f"processes killed after the timeout ({call.when})", "\n".join(killed)))


_ENDING = threading.Event()  # set by the backstop: this process is being ended


def _backstop(nodeid: str, limit: float) -> None:
    """The signal did not end the test: name it, show where every thread is, kill what this
    process started and end it. Not while a debugger holds the test (pytest-timeout's alarm
    did nothing then either)."""
    if _debugging():
        return
    # killing the test's processes can free the main thread (a test waiting on a child);
    # it then stops at its next report instead of running on into the module's fixture
    # teardowns, whose servers are being killed too (a race the xdist test lost under load)
    _ENDING.set()
    try:
        out = sys.__stderr__ or sys.stderr
        out.write(f"\n+++ {nodeid} still runs {BACKSTOP_GRACE:.0f} s after its timeout "
                  f"({limit:.0f} s): the process is ended (tests/timeouts.py)\n")
        for ident, frame in sys._current_frames().items():
            if ident != threading.get_ident():
                out.write(f"~~~ thread {ident}\n{''.join(traceback.format_stack(frame))}")
        killed = kill_new_descendants(EVER, grace=2.0)
        if killed:
            out.write("+++ processes killed:\n" + "\n".join(killed) + "\n")
        out.flush()
    finally:
        os._exit(1)


def _debugging() -> bool:
    """pytest-timeout's own test (``breakpoint()``/pdb under pytest, a known debugger's
    tracer), asked of the main thread's tracer since this runs in the backstop's thread."""
    import pytest_timeout

    if pytest_timeout.SUPPRESS_TIMEOUT:
        return True
    main = threading.main_thread()
    frame = sys._current_frames().get(main.ident) if main.ident is not None else None
    tracer = getattr(frame, "f_trace", None) if frame is not None else None
    return bool(pytest_timeout.is_debugging(tracer))
