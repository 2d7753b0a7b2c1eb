"""Ctrl-C and SIGTERM stop a local run at once, and leave no process behind.

``autokfp run`` runs each pipeline task as a process of its own (kfp.local's
``SubprocessRunner``, or forked from the warm task worker), a training task runs its engine
in a child, and the engine starts H2O's JVM: in sessions of their own, which a terminal's
Ctrl-C does not reach. Python's default reaction to Ctrl-C in the runner was a
KeyboardInterrupt in its main thread while kfp.local's worker threads waited for the tasks
and then started the tasks still queued, and SIGTERM ended the runner outright.

While ``stop_on_signals`` is open, the first SIGINT or SIGTERM ends every process this one
started, however deep (found through /proc, so sessions do not hide them), has no task
start after it (``stopping``), and then, for the command line, writes its one line and ends
the process with 128 + the signal's number (130, 143) from the handler; a caller that passes
no report gets ``RunInterrupted`` raised in the main thread instead. A second signal while
stopping is ignored. Ending a task at any instruction is what the steps are built for
(every write is atomic: docs/architecture.md, "A step killed half-way").
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping = 0  # the signal that stops this process's run, 0 while none came


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def what(self) -> str:
        return "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def stopping() -> int:
    """The signal that is stopping this process's run (0: none)."""
    return _stopping


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below ``pid`` (default: this one), parents before children."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _serving(pid: int) -> bool:
    """Whether ``pid`` is the predictor the local serving state names (the live model
    server, which outlives the deploy step that promoted it by design)."""
    from autokfp.lifeline import SERVING_STATE_ENV, _named_pid

    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    prefix = SERVING_STATE_ENV.encode() + b"="
    state = next((item[len(prefix):] for item in environ if item.startswith(prefix)), None)
    return state is not None and _named_pid(os.fsdecode(state)) == pid


def _run_by(runners: set[int]) -> list[int]:
    """Live processes started under one of ``runners``: their environment names it as
    ``AUTOKFP_RUNNER_PID`` (what the runner exports and each task passes on), wherever
    they were re-parented to."""
    from autokfp.lifeline import RUNNER_ENV

    wanted = {f"{RUNNER_ENV}={pid}".encode() for pid in runners}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in runners:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted.intersection(environ):
            found.append(int(entry.name))
    return found


def end_descendants(rounds: int = 5) -> int:
    """SIGKILL every process below this one (repeated while new ones appear) but the
    predictor the serving state names; the number ended. The whole tree is listed before
    any is killed, and so are the processes whose environment names this process or one of
    the tree as their runner: a process whose parent died just before (a task that got
    Ctrl-C too and killed its engine's child, whose JVM is then re-parented to init) is
    found all the same. (A predictor a killed deploy step left unnamed stops on its own:
    ``lifeline.watch_serving_state``.)"""
    ended: set[int] = set()
    for _ in range(rounds):
        tree = descendants()
        pids = [pid for pid in dict.fromkeys(tree + _run_by({os.getpid(), *tree}))
                if pid not in ended and not _serving(pid)]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            ended.add(pid)
        time.sleep(0.05)
    return len(ended)


@contextlib.contextmanager
def stop_on_signals(report: Callable[[int], str] | None = None) -> Iterator[None]:
    """Turn the first SIGINT / SIGTERM into: every process below this one ended, no task
    started after it, then, with ``report``, its line (``report(signum)``) written to the
    terminal's stderr as it was when the block was entered and this process ended at once
    with 128 + the signal; without, ``RunInterrupted`` raised here. Outside the main
    thread (where no handler can be installed) it does nothing.

    The command line passes ``report``: unwinding kfp.local's threads after the tasks were
    ended could hold a real run for more than a minute (seen on a pty: every process below
    the runner gone within a second, the runner itself still up 60 s later); nothing is
    left for this process to finish (its tasks write what is stored, and they are gone)."""
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    terminal = os.dup(2) if report is not None else -1  # before output goes to the log

    def handler(signum: int, frame: Any) -> None:
        global _stopping
        if _stopping:  # a second Ctrl-C while stopping: already on its way out
            return
        _stopping = signum
        end_descendants()
        if report is None:
            raise RunInterrupted(signum)
        try:
            try:
                line = report(signum)
            except Exception as exc:  # noqa: BLE001 - the run still stops, and says so
                line = (f"interrupted by {RunInterrupted(signum).what}: the run was stopped "
                        f"and its processes ended ({type(exc).__name__} in its report: {exc})")
            clear = "\r\x1b[2K\x1b[?25h" if os.isatty(terminal) else ""  # a spinner's line
            os.write(terminal, (clear + line + "\n").encode(errors="replace"))
        finally:
            os._exit(128 + signum)

    previous = {number: signal.signal(number, handler) for number in SIGNALS}
    try:
        yield
    finally:
        if not _stopping:
            for number, action in previous.items():
                signal.signal(number, action)
        # once stopping, later signals stay ignored until the process has exited: the
        # interpreter still joins kfp.local's threads, whose tasks are ended already
        if terminal >= 0:
            os.close(terminal)
