"""A process that must not outlive its parent: stop when the parent is gone.

``autokfp run`` starts pipeline tasks as subprocesses, and a training task starts its engine
in a child of its own session (which starts H2O's JVM in yet another session). A kill -9 of
the parent runs no cleanup, and the children are re-parented and would run on. So each
level watches its parent: a task watches the runner (``AUTOKFP_RUNNER_PID``), the engine
child watches its task; when the parent is gone the process stops what it started and
exits, so the whole tree is gone within a few poll intervals.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RUNNER_ENV = "AUTOKFP_RUNNER_PID"
POLL_SECS = 0.5
_started = False


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
    import signal

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
