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
