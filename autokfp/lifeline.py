"""A process that must not outlive its parent: stop when the parent is gone.

``autokfp run`` starts pipeline tasks as subprocesses, and a training task starts its engine
in a child of its own session (which starts H2O's JVM in yet another session). A kill -9 of
the parent runs no cleanup, and the children are re-parented and would run on. So each
level watches its parent: a task watches the runner (``AUTOKFP_RUNNER_PID``), the engine
child watches its task; when the parent is gone the process stops what it started and
exits, so the whole tree is gone within a few poll intervals.

H2O's JVM, which watches nothing, has the kernel end it the moment the process that started
it is gone (``dies_with_parent``: ``PR_SET_PDEATHSIG``), whatever ended that process,
``kill -9`` included. The children autokfp waits for (an engine's child, Evidently's child:
``start_child``) watch their parent instead, so that they can stop what they started first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

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
    (H2O's JVM, used within a ``with`` block).
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


_EVERY_PROCESS_EXIT: list[Callable[[], Any]] = []  # see ``at_every_exit``


def at_every_exit(function: Callable[[], Any]) -> Callable[[], Any]:
    """``atexit.register(function)``, kept in the children ``start_child`` forks from this
    process too (``forked_child`` drops the parent's other handlers). For a module's handler
    that tends to what each process itself started (a module imported before the fork
    registers it only once): H2O's reapers, which remove a JVM's temporary files."""
    import atexit

    _EVERY_PROCESS_EXIT.append(function)
    atexit.register(function)
    return function


def forked_child() -> None:
    """In a child just forked from this process (``os.fork``): lead a session of its own,
    and drop what is the parent's, not the child's: its ``atexit`` handlers (but those of
    ``at_every_exit``) and its watch (the watch thread is not in the child, so a
    ``watch_parent`` there starts its own)."""
    import atexit

    global _started
    os.setsid()
    atexit._clear()
    for function in _EVERY_PROCESS_EXIT:
        atexit.register(function)
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


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``): the same pid
    with another start time is another process. None when it is gone or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


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
    # a predictor forked by a local run's warm process (``serving.warm_predictor``) is not
    # the deploy step's child: it watches the step by its pid and start time instead
    born = _start_time(parent_pid)

    def step_runs() -> bool:
        return os.getppid() == parent_pid or (born is not None
                                              and _start_time(parent_pid) == born)

    def watch() -> None:
        while step_runs() or _named_pid(state_file) == os.getpid():
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


# ------------------------------------------------------------------------ children we wait for

FORK_ENV = "AUTOKFP_ENGINE_FORK"  # 1: fork the children below; 0: new interpreters
_BOOT = ("import sys; from autokfp.lifeline import run_target; "
         "sys.exit(run_target(sys.argv[1], sys.argv[2:]))")
_fork_safe = False  # this process was forked from one that only imported (``allow_fork``)


def allow_fork() -> None:
    """Say that this process has run no library's thread pool: a local task just forked from
    the warm worker, which only imported (``autokfp.edge.taskfork``). ``start_child`` then
    forks its children for as long as the process has no thread Python did not start."""
    global _fork_safe
    _fork_safe = True


def native_threads() -> int | None:
    """How many threads of this process Python did not start (a library's pool: OpenMP,
    TensorFlow, Arrow, BLAS); None when it cannot be told (no ``/proc``)."""
    try:
        ids = {int(name) for name in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return None
    # the main thread's native_id is its parent's after a fork: the caller's own id counts.
    # A _DummyThread is a library's thread that called into Python (an Arrow IO thread in
    # fsspec, a JVM thread in a JPype proxy, anything that logs): not Python's own
    python = {thread.native_id for thread in threading.enumerate()
              if not isinstance(thread, threading._DummyThread)} | {threading.get_native_id()}
    return len(ids - python)


def fork_wanted() -> bool:
    """Whether ``start_child`` forks instead of starting a new interpreter:
    ``AUTOKFP_ENGINE_FORK=1`` always, ``=0`` never; unset, when ``allow_fork`` was called in
    this process and it has no native thread yet (``native_threads``). A child forked from a
    process whose TensorFlow or OpenMP pools had run hung in CI; such pools leave their
    threads, so a process that ran one is never forked unless asked to."""
    if not hasattr(os, "fork"):
        return False
    value = os.environ.get(FORK_ENV, "").strip().lower()
    if value:
        return value in ("1", "true", "yes", "on")
    return _fork_safe and native_threads() == 0


def run_target(target: str, args: list[str]) -> int:
    """Call ``module:function(args)``; its int result (None: 0) is the exit status."""
    import importlib

    module_name, _, name = target.partition(":")
    result = getattr(importlib.import_module(module_name), name)(args)
    return int(result or 0)


class ForkedChild:
    """The parts of ``subprocess.Popen`` the callers of ``start_child`` use, for a fork."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"child {self.pid}", timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return self.returncode  # type: ignore[return-value]  # set by poll


def start_child(target: str, args: list[str], env: dict[str, str] | None = None,
                stdin: int | None = None, stdout: int | None = None,
                stderr: int | None = None) -> Any:
    """Start ``module:function(args)`` in a child process that leads a session of its own
    (its group is killed whole: ``os.killpg(child.pid, SIGKILL)``): an engine's child
    (``training.isolation``), Evidently's child (``quality``). Each watches its parent
    (``watch_parent``) and, once the parent is gone, stops what it started (the processes it
    listed, its group) before it exits; a kernel SIGKILL on the parent's death
    (``dies_with_parent``) would end it before that cleanup. ``env`` is added to this
    process's environment; ``stdin``/``stdout``/``stderr`` are file descriptors (None:
    inherited). Returns a ``subprocess.Popen`` or, forked, a ``ForkedChild``.

    By default the child is a new interpreter (``python -c`` calling ``run_target``): a
    child forked from a process whose TensorFlow or OpenMP thread pools already ran can hang
    (CI of c1d0bbb: an AutoKeras refit and a HistGradientBoosting plugin forked from a
    pytest worker that had run both were stopped after 960 s and 645 s). It is forked instead
    (``fork_wanted``) from a parent known to have run neither: a local run's task forked from
    the warm worker that still has no native thread, or any with ``AUTOKFP_ENGINE_FORK=1``.
    The fork starts with what this process imported (no second import of pandas, MLflow or
    TensorFlow), runs the function and ends as an interpreter would (its own threads joined,
    its own ``atexit`` handlers run, not this process's)."""
    import subprocess

    if not fork_wanted():
        if _fork_safe and not os.environ.get(FORK_ENV, "").strip():
            log.info("%s starts as a new interpreter: this process runs %s threads Python did "
                     "not start (a library's pool), so it is not forked", target,
                     native_threads())
        return subprocess.Popen([sys.executable, "-c", _BOOT, target, *args],
                                start_new_session=True, env={**os.environ, **(env or {})}, stdin=stdin, stdout=stdout,
                                stderr=stderr)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return ForkedChild(pid)
    code = 1
    try:  # the child: nothing below may return into the caller's frames
        import traceback

        forked_child()
        for fd, target_fd in ((stdin, 0), (stdout, 1), (stderr, 2)):
            if fd is not None:
                os.dup2(fd, target_fd)
        os.environ.update(env or {})
        if "numpy" in sys.modules:  # a new interpreter's generator would not repeat the parent's
            sys.modules["numpy"].random.seed()
        try:
            code = run_target(target, args)
        except BaseException:  # noqa: BLE001 - reported as a new interpreter would
            traceback.print_exc()
            code = 1
    finally:
        _exit_child(code)


def _exit_child(code: int) -> NoReturn:
    """End a forked child as the interpreter ends a process, without tearing down the
    modules it shares with its parent."""
    import atexit

    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001, S110 - a closed stream: nothing to flush
                pass
        os._exit(code)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists (another user's counts) and is not a zombie
    (killed, not yet waited for by its parent: gone for every purpose but its id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    return True


# ------------------------------------------------------------------------ stopping a process


class _MultiprocessingChild:
    """The parts of ``subprocess.Popen`` ``stop_processes`` uses, for a started
    ``multiprocessing.Process`` (whose ``exitcode`` reaps it, as ``poll`` does)."""

    def __init__(self, process: Any) -> None:
        self.process, self.pid = process, process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode  # type: ignore[no-any-return]

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        self.process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"child {self.pid}", timeout or 0)
        return self.returncode


def stop_processes(processes: Iterable[Any], grace: float = 10.0, group: bool = False
                   ) -> list[int]:
    """Stop each process as a server is stopped: SIGTERM to every one at once, ``grace``
    seconds (one deadline for all) for each to end, then SIGKILL to those still running;
    each is waited for (no zombie left). ``grace`` 0: SIGKILL at once (a child waiting on a
    lock for good may never act on SIGTERM). ``group``: signal each one's whole process
    group (a process that leads a session of its own and forks workers: ``mlflow server``).
    Takes ``subprocess.Popen`` objects, ``ForkedChild`` or started
    ``multiprocessing.Process`` objects; returns their exit statuses (-15 for one that ended
    on SIGTERM, -9 for one that had to be killed)."""
    import subprocess

    processes = [process if hasattr(process, "poll") else _MultiprocessingChild(process)
                 for process in processes]
    running = [process for process in processes if process.poll() is None]
    for process in running if grace > 0 else ():
        _send(process, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _send(process, signal.SIGKILL, group)
            process.wait()
        if group:  # what the group's leader left behind
            _send(process, signal.SIGKILL, group)
    return [process.returncode for process in processes]


def stop_process(process: Any, grace: float = 10.0, group: bool = False) -> int:
    """``stop_processes`` for one process: SIGTERM, ``grace`` seconds (0: none), SIGKILL;
    its exit status."""
    return stop_processes([process], grace, group)[0]


def _send(process: Any, number: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, number)
        elif hasattr(process, "send_signal"):  # Popen: never a reaped pid another process took
            process.send_signal(number)
        elif process.poll() is None:
            os.kill(process.pid, number)


# ------------------------------------------------------------------------ a child that hangs

STALL_ENV = "AUTOKFP_CHILD_STALL_SECS"
# Why 120 s: progress is the child's CPU time or its output, never the wall clock alone, so
# a loaded machine only slows progress down: at load 10 on 2 cores a runnable child still
# gets about a fifth of a core, 24 CPU-s in 120 s, where 0.5 is enough. What goes 120 s
# with neither is a child blocked on a lock or a thread that does not exist in it (a fork's
# hazard); a source waiting on its database or server (a long query) is told apart and not
# counted (``waiting_on_server``). The recipe then runs in the parent, correct, only later.
# Short enough that a hang costs a discover task two minutes, not the pipeline's (or
# pytest's) whole timeout.
DEFAULT_STALL_SECS = 120.0
STALL_CPU_SECS = 0.5  # CPU time a child must use (or output it must write) to count as alive


def cpu_seconds(pid: int) -> float | None:
    """Process ``pid``'s CPU time (user + system, its threads together) from ``/proc``;
    None when it cannot be read (gone, or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The system calls in which a thread waits on a file descriptor, by machine: how the
# descriptors are found ("fd": the first argument; "poll": an array of ``struct pollfd`` at
# the first argument, as many as the second). Python's sockets (pg8000, PyMySQL, HTTP
# clients: ``recvfrom``, or ``poll`` then ``recvfrom`` with a timeout) and libpq
# (psycopg2: ``poll``) wait for a server's answer in one of these.
_FD_WAITS = {
    "x86_64": {0: "fd", 17: "fd", 19: "fd", 42: "fd", 45: "fd", 47: "fd", 7: "poll",
               271: "poll"},  # read pread64 readv connect recvfrom recvmsg poll ppoll
    "aarch64": {63: "fd", 67: "fd", 65: "fd", 203: "fd", 207: "fd", 212: "fd",
                73: "poll"},  # read pread64 readv connect recvfrom recvmsg ppoll
}


def _tcp_inodes(pid: int) -> set[str]:
    """The inodes of the TCP sockets in process ``pid``'s network namespace."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
                next(handle, None)  # the header
                inodes.update(fields[9] for line in handle if len(fields := line.split()) > 9)
    return inodes


def waiting_on_server(pid: int) -> bool:
    """Whether process ``pid``'s main thread is blocked in a system call that waits on a TCP
    socket (a read, a receive, a connect, a ``poll`` of it): a query a database is still
    answering, a request a server has not answered yet. False when it cannot be told
    (another machine than Linux on x86_64 or aarch64, no ``/proc``, a process this one may
    not inspect: ``/proc/<pid>/syscall`` and ``mem`` need the right to trace it).

    Only the main thread: the hazards ``Stall`` watches for (a lock held at the fork, work
    handed to a thread the fork does not have) hold the main thread, and an idle thread of a
    connection pool blocked on a socket must not hide them. A futex (a lock), an epoll
    (an event loop waiting for a thread) or a pipe is never a server's answer."""
    import platform
    import struct

    waits = _FD_WAITS.get(platform.machine())
    if waits is None:
        return False
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as handle:
            fields = handle.read().split()
        how = waits.get(int(fields[0]))  # "running", or -1: not in a system call
        if how is None:
            return False
        if how == "fd":
            fds = [int(fields[1], 16)]
        else:
            count = min(int(fields[2], 16), 64)
            with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
                data = os.pread(memory.fileno(), 8 * count, int(fields[1], 16))
            fds = [fd for fd, _, _ in struct.iter_unpack("ihh", data[:8 * count])]
        sockets = set()
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    sockets.add(target[8:-1])
    except (OSError, ValueError, IndexError, struct.error):
        return False
    return bool(sockets and sockets & _tcp_inodes(pid))


class Stall:
    """One wait of a parent on a child's output (a frame of a spool, a file): ``stalled()``
    says whether the child made no progress for ``seconds``, progress being
    ``STALL_CPU_SECS`` of CPU time used (``cpu_seconds``) since the last progress. Its output
    is the caller's to watch: a wait ends (and a new ``Stall`` starts) when output comes.
    Time the child's main thread spends waiting on a server (``waiting_on_server``: a long
    query makes no output and uses no CPU time) does not count: the bound starts again after
    each such wait seen.

    Why CPU time and not a heartbeat the child writes: a thread's heartbeat goes on while the
    child's main thread waits for good on a lock held at the fork, and one written by the
    main thread between records stops while DataHub's source reads or profiles a large
    input for minutes. Where CPU time cannot be read, output alone is progress."""

    def __init__(self, pid: int, seconds: float) -> None:
        self.pid, self.seconds = pid, seconds
        self._since = self._read = time.monotonic()
        self._cpu = cpu_seconds(pid)

    def stalled(self) -> bool:
        now = time.monotonic()
        if now - self._read >= 0.25:  # callers poll every few ms: /proc at most 4 times a second
            self._read, cpu = now, cpu_seconds(self.pid)
            if cpu is not None and (self._cpu is None or cpu - self._cpu >= STALL_CPU_SECS):
                self._since, self._cpu = now, cpu
            elif waiting_on_server(self.pid):
                self._since = now
        return now - self._since >= self.seconds


STACK_SIGNAL = signal.SIGUSR1


def dump_stacks_on_signal(path: str) -> None:
    """In a child another process watches (see ``Stall``): on ``STACK_SIGNAL`` write every
    thread's Python stack to ``path`` (``faulthandler``: written from the signal handler
    itself, so also while the main thread waits on a lock for good)."""
    import faulthandler

    handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - faulthandler keeps it open
    faulthandler.register(STACK_SIGNAL, file=handle, all_threads=True, chain=False)


def stacks_of(pid: int, path: str, wait: float = 2.0) -> str:
    """The stacks of child ``pid`` that ``dump_stacks_on_signal(path)`` prepared, asked for
    now; "" when it does not answer within ``wait`` seconds (not prepared, or gone)."""
    before = 0
    with contextlib.suppress(OSError):
        before = os.path.getsize(path)
    try:
        os.kill(pid, STACK_SIGNAL)
    except (ProcessLookupError, PermissionError):
        return ""
    deadline, size = time.monotonic() + wait, -1
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            now = os.path.getsize(path)
        except OSError:
            return ""
        if now > before and now == size:  # written, and no longer growing
            break
        size = now
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
        handle.seek(before)
        return handle.read()
    return ""
