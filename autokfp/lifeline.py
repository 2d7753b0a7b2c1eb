"""A process that must not outlive its parent: stop when the parent is gone.

``autokfp run`` starts pipeline tasks as subprocesses, and a training task starts its engine
in a child of its own session (which starts H2O's JVM in yet another session). A kill -9 of
the parent runs no cleanup, and the children are re-parented and would run on. So each
level watches its parent: a task watches the runner (``AUTOKFP_RUNNER_PID``), the engine
child watches its task; when the parent is gone the process stops what it started and
exits, so the whole tree is gone within a few poll intervals.

The processes autokfp starts for a while and waits for (an engine's child, Evidently's
child, H2O's JVM) also have the kernel end them the moment their parent is gone
(``dies_with_parent``: ``PR_SET_PDEATHSIG``), with no poll and whatever ended the parent,
``kill -9`` included.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RUNNER_ENV = "AUTOKFP_RUNNER_PID"
POLL_SECS = 0.5
_started = False
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up now (never between fork and exec); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                         ctypes.c_ulong]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def dies_with_parent(then: Callable[[], object] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child is SIGKILLed by the kernel as
    soon as the thread that started it ends (its process killed, ``kill -9`` included).
    ``then`` is the caller's own ``preexec_fn`` (H2O's ``os.setsid``), run first.

    The parent is the starting *thread*: start with it only a process that thread waits for
    (``run_isolated``'s child, Evidently's child, a JVM used within a ``with`` block).
    Elsewhere than Linux only ``then`` runs."""
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        if then is not None:
            then()
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent ended before the request was made
                os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def watch_parent(parent_pid: int | None = None,
                 on_orphaned: Callable[[], None] | None = None) -> bool:
    """Exit this process (after ``on_orphaned``) as soon as ``parent_pid`` is no longer its
    parent. Returns whether a watch was started (once per process)."""
    global _started
    parent_pid = parent_pid or os.getppid()
    if _started or parent_pid <= 1:
        return False
    _started = True

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_SECS)
        log.warning("parent process %s is gone: stopping", parent_pid)
        try:
            if on_orphaned is not None:
                on_orphaned()
        finally:
            os._exit(3)

    threading.Thread(target=watch, name="autokfp-lifeline", daemon=True).start()
    return True


def forked_child() -> None:
    """In a child just forked from this process (``os.fork``): lead a session of its own,
    and drop what is the parent's, not the child's: its ``atexit`` handlers and its watch
    (the watch thread is not in the child, so a ``watch_parent`` there starts its own)."""
    import atexit

    global _started
    os.setsid()
    atexit._clear()
    _started = False


def watch_runner() -> bool:
    """In a pipeline task: watch the local runner that started it (set by ``autokfp run``)."""
    value = os.environ.get(RUNNER_ENV)
    if not value or not value.isdigit() or int(value) != os.getppid():
        return False
    return watch_parent(int(value))


SERVING_STATE_ENV = "AUTOKFP_SERVING_STATE"
SERVING_PARENT_ENV = "AUTOKFP_SERVING_PARENT"


def _named_pid(state_file: str) -> int | None:
    """The pid the local serving state names (None: no state, or one that does not parse)."""
    import json

    try:
        with open(state_file, encoding="utf-8") as handle:
            pid = json.load(handle).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def watch_serving_state(stop: Callable[[], None] | None = None) -> bool:
    """In a local predictor the deploy step started (``LocalServing.start`` sets
    ``AUTOKFP_SERVING_STATE`` and ``AUTOKFP_SERVING_PARENT``): once that step is gone, keep
    serving only while the serving state names this process.

    A candidate a killed deploy step left behind (never named) and a server another one
    replaced (no longer named, also when the step was killed before stopping it) stop on
    their own within a few poll intervals. ``stop`` ends the server gracefully (default:
    SIGTERM to this process); the process is ended outright 10 s later if it still runs.
    """
    state_file, parent = os.environ.get(SERVING_STATE_ENV), os.environ.get(SERVING_PARENT_ENV)
    if not state_file or not parent or not parent.isdigit():
        return False
    parent_pid = int(parent)

    def watch() -> None:
        while os.getppid() == parent_pid or _named_pid(state_file) == os.getpid():
            time.sleep(POLL_SECS)
        log.warning("the local serving state (%s) does not name this predictor and the deploy "
                    "step that started it is gone: stopping", state_file)
        try:
            if stop is not None:
                stop()
            else:
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        finally:
            os._exit(3)

    threading.Thread(target=watch, name="autokfp-serving-lifeline", daemon=True).start()
    return True
