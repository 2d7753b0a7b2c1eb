"""A warm worker for local runs: kfp.local's tasks forked from one process that has
imported the heavy modules once.

kfp.local's ``SubprocessRunner`` starts every task as a new interpreter (``sh -ec '...
python -m kfp.dsl.executor_main ...'``), so each of a run's ~15 tasks imports pandas,
pydantic, MLflow, scikit-learn and SciPy again before it does any work: seconds per task on
an idle core, several times that on a loaded machine (``scripts/benchmark_task_startup.py``
measures it). Here one worker process imports those modules once (``PRELOAD``) and forks a
child per task: it takes tasks once it has imported what the first tasks need
(``PRELOAD_FIRST``), and imports the rest (``PRELOAD_LATER``) one module at a time while no
task waits, so that the first tasks need not run as new interpreters alongside its
imports. The child runs exactly what the task's command would have run (the component's
source written to a fresh temporary folder, ``kfp.dsl.executor_main`` with the
task's arguments, the task's environment and working folder) with its output on a pipe the
runner reads as before, and exits like an interpreter does (``atexit`` handlers, threads
joined). So each task is still its own process: nothing it does reaches the worker or
another task, a failing task prints its traceback and exits non-zero, and kfp.local fails
the run with it.

Only the local runner changes: the compiled pipeline (what Kubeflow runs, one pod per task)
is the same. A task whose command is not kfp's plain lightweight-component command, or
whose environment differs from the worker's (a library reads some variables at import),
runs as kfp.local runs it. ``AUTOKFP_LOCAL_FORK=0`` turns the worker off.

H2O's client is imported by the worker too when the run has H2O among its engines
(``preload_for_run``): select, bias check, evaluation, explanation, the model card and the
deploy step each imported it again (1-4 s each under load). For the training pipeline it
imports Evidently first of its later imports (only the profile step's child uses it) and, in
a run with AutoKeras, TensorFlow and Keras last, once the profile step was forked
(``AFTER_MARK``: while it runs, before training); else (a
run whose config its first task fills in, a worker that had not got there) TensorFlow and Keras
are imported by the worker when the first task that trains, refits or loads model packages
(``TENSORFLOW_TASKS``) runs in a run with AutoKeras: with an AutoKeras champion every later
task loads it again. Only imported, never
run, in the worker (TensorFlow's runtime, once started, is not fork-safe). A task forked here
forks the children it starts and waits for (an engine's, Evidently's) as long as it runs no
library's thread pool (``lifeline.allow_fork``), so AutoKeras's engine child does not import
TensorFlow again, nor any child pandas, MLflow or scikit-learn.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from autokfp import lifeline
from autokfp.lifeline import RUNNER_ENV
from autokfp.settings import switched_off

log = logging.getLogger(__name__)

SWITCH_ENV = "AUTOKFP_LOCAL_FORK"
# imported once in the worker, before it takes tasks: what the first tasks (resolve-config,
# discover) import, and most others (scripts/benchmark_task_startup.py)
PRELOAD_FIRST = (
    # what kfp.dsl.executor_main imports (the module itself runs fresh in each task)
    "kfp.dsl.executor",
    "kfp.dsl.kfp_config",
    "kfp.dsl.utils",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pydantic",
    "yaml",
    "autokfp.config",
    "autokfp.settings",
    # DataHub's metadata classes, emitter and graph client (lineage and the catalog: the
    # first task, discover, register and deploy each imported them: 10.5 s in all at load 25)
    "datahub.metadata.schema_classes",
    "datahub.emitter.mcp",
    "datahub.emitter.mce_builder",
    "datahub.lite.lite_util",
    "datahub.ingestion.graph.client",
)
# imported once in the worker after it takes tasks, one module at a time while no task is
# waiting to be forked: what the later tasks import and the first ones do not (they ran as
# new interpreters alongside these imports and, under load, the worker was not ready for
# discover either: 72-88 s each at load 10-20 in session 14's base)
PRELOAD_LATER = (
    "mlflow",
    "mlflow.tracking",
    "mlflow.pyfunc",
    # the SQLite store behind the registry and the audit trail (not opened here)
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "sklearn.metrics",
    "scipy.stats",
    "matplotlib.pyplot",
)
PRELOAD = PRELOAD_FIRST + PRELOAD_LATER
FIRST_MARK = "+"  # on the worker's command line: a module imported before it takes tasks
# the tasks that load model packages (an AutoKeras one imports TensorFlow and Keras: 7 s on
# an idle core, 10-25 s under load, in each of them); when the run has AutoKeras, the
# first of them has the worker import TensorFlow first, once, for it and the rest
PACKAGE_TASKS = frozenset({"select_model", "bias_check", "evaluate_model", "explain_model",
                           "write_model_card", "deploy_model"})
# and the tasks whose engine child is forked from them (``lifeline.start_child``): with
# TensorFlow imported first, AutoKeras's training and refit children import it no more
# (12.6-15.7 s under load, then again 12.3-17.9 s for select: once a run now)
TENSORFLOW_TASKS = PACKAGE_TASKS | {"train_model", "refit_model"}
TENSORFLOW = ("tensorflow", "keras")
# Evidently's data summary, for a training run: the profile step (the third task) forks its
# child from the task, so with these imported by the worker the child imports Evidently no
# more (session 23, Males, the step replayed in a worker-forked task: the child's CPU 3.6-3.8
# -> 1.0 s). Imported first of the later imports (the profile step comes before any task
# that needs MLflow), in pieces so that a task waits for one piece at most (Evidently's own
# package is one: its ``__init__`` imports the rest, ~2.3 CPU-s)
EVIDENTLY = ("sklearn.metrics", "scipy.stats", "nltk", "plotly.express", "evidently",
             "evidently.presets")
# MODULE@FUNCTION among the later imports: imported only once a task running FUNCTION has
# been forked. TensorFlow (one ~3.5 CPU-s import a task that comes meanwhile must wait for)
# waits for the profile step: it then imports while that step runs (Evidently's child on one
# core, the worker on the other at idle), not when profile or a step before it comes
AFTER_MARK = "@"
TENSORFLOW_AFTER = "profile"
READY_TIMEOUT_SECS = 300.0
_HEADER = struct.Struct("!I")


def _lightweight_script() -> str | None:
    """The shell script kfp puts first in every lightweight component's command (kfp
    version's own), or None when it cannot be had."""
    try:
        from kfp.dsl import component_factory

        def probe() -> None:
            pass

        command, _ = component_factory._get_command_and_args_for_lightweight_component(probe)
        return str(command[2])
    except Exception:  # noqa: BLE001 - another kfp: run tasks as kfp.local does
        return None


@dataclass
class Request:
    """One task for the worker: what ``sh -ec SCRIPT SOURCE ARGS...`` would have run."""

    source: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    preload: list[str] = field(default_factory=list)  # imported by the worker first, once


class TaskWorker:
    """The runner's side: starts the worker, hands it tasks, relays their output."""

    def __init__(self, preload: tuple[str, ...] = (), first: tuple[str, ...] = ()) -> None:
        self.preload = preload  # imported by the worker after PRELOAD, while no task waits
        self.first = first  # imported with PRELOAD_FIRST, before it takes tasks
        self._folder = Path(tempfile.mkdtemp(prefix="autokfp-worker-"))
        self.address = str(self._folder / "socket")
        self.environment = dict(os.environ)
        self.forked = 0  # tasks run by the worker (the rest ran as kfp.local runs them)
        self._script = _lightweight_script()
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker; it imports ``PRELOAD_FIRST`` while the pipeline is being set up."""
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "autokfp.edge.taskfork", self.address, str(os.getpid()),
             *(f"{FIRST_MARK}{name}" for name in self.first), *self.preload],
            env=self.environment)

    def ready(self, wait: float = 0.0) -> bool:
        """Whether the worker takes tasks, waiting up to ``wait`` seconds for it to finish
        its imports. A worker that exited, or is not ready ``READY_TIMEOUT_SECS`` after
        its start, is closed (tasks then run as kfp.local runs them)."""
        with self._lock:
            if self._ready.is_set():
                return True
            if self._process is None:
                return False
            deadline = time.monotonic() + wait
            while True:
                if os.path.exists(self.address):
                    self._ready.set()
                    return True
                if self._process.poll() is not None \
                        or time.monotonic() - self._started > READY_TIMEOUT_SECS:
                    log.warning("the local task worker did not start (%s): tasks run as new "
                                "processes", "exited" if self._process.poll() is not None
                                else "timed out")
                    self.close()
                    return False
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def accepts(self, full_command: list[str], env: dict[str, str]) -> bool:
        """Whether the worker can run this command exactly as kfp.local would."""
        if self._script is None or len(full_command) < 4 or full_command[:2] != ["sh", "-ec"]:
            return False
        if full_command[2] != self._script.replace("python3", sys.executable):
            return False
        return env == self.environment

    def run(self, full_command: list[str], env: dict[str, str]) -> int | None:
        """Run the task in a forked child, print its output as kfp.local does, return its
        exit status; None when the worker is unavailable or not ready yet (run it as
        kfp.local does)."""
        # a task that comes while the worker still imports does not wait for it: it runs
        # as kfp.local runs it, alongside the imports (under load the worker's imports
        # outlasted the first tasks: resolve-config waited 68 s for them at load 25)
        if not self.ready():
            return None
        request = Request(source=full_command[3], args=list(full_command[4:]), env=env,
                          cwd=os.getcwd(), preload=preload_for(full_command[4:]))
        body = json.dumps(vars(request)).encode()
        reader, writer = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                connection.connect(self.address)
                socket.send_fds(connection, [_HEADER.pack(len(body))], [writer])
                connection.sendall(body)
            except OSError as exc:
                log.warning("the local task worker is gone (%s): tasks run as new processes", exc)
                os.close(reader)
                self.close()
                return None
            finally:
                os.close(writer)
            self.forked += 1
            # as kfp.local's run_local_subprocess: every line as it comes, then a blank line
            with open(reader, encoding="utf-8", errors="replace", newline=None) as output:
                for line in iter(output.readline, ""):
                    print(line, end="")
            print("\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(64)
                if not chunk:
                    print("autokfp: the local task worker stopped before the task ended",
                          file=sys.stderr)
                    return 1
                answer += chunk
            return int(json.loads(answer)["returncode"])
        finally:
            connection.close()

    def close(self) -> None:
        """Stop the worker (tasks still running are its children: they watch it and stop)."""
        process, self._process = self._process, None
        self._ready.clear()
        if process is not None:
            lifeline.stop_process(process)
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            self._folder.rmdir()


def preload_for(args: list[str]) -> list[str]:
    """What the worker imports before forking the task with these arguments: TensorFlow for
    a task that loads model packages, trains or refits (``TENSORFLOW_TASKS``) in a run that
    has AutoKeras among its engines (its executor input, the run's config included, names
    it). Imported once, for good: the first training task imports it for AutoKeras's engine
    child (forked from the task) and for the tasks after it, which load its candidate."""
    function = _function(args)
    if function in TENSORFLOW_TASKS and any("autokeras" in arg for arg in args):
        return list(TENSORFLOW)
    return []


def enabled() -> bool:
    return not switched_off(os.environ.get(SWITCH_ENV))


def preload_for_run(arguments: dict[str, object], pipeline: str = "") -> tuple[str, ...]:
    """What the worker imports for a run with these pipeline arguments, besides ``PRELOAD``
    (after it, while no task waits): H2O's client when H2O is among the engines (its config
    names it). For the training pipeline (``pipeline`` ``autonomous-training``) also
    Evidently (``EVIDENTLY``: first, for the profile step's child) and, when AutoKeras is
    among the engines, TensorFlow and Keras last, once the profile step was forked
    (``TENSORFLOW_AFTER``): imported while that step runs, not when AutoKeras's training task
    comes (``preload_for``: 5.8 s of session 22's
    idle Males run between that task's start and its code, outside the engines)."""
    text = json.dumps(arguments, default=str).lower()
    training = pipeline == "autonomous-training"
    return ((*(EVIDENTLY if training else ()), *(("h2o",) if "h2o" in text else ()),
             *(f"{name}{AFTER_MARK}{TENSORFLOW_AFTER}" for name in TENSORFLOW
               if training and "autokeras" in text)))


def _next_import(later: list[str], forked: set[str]) -> int | None:
    """The position in ``later`` of the next module to import: the first one that is not
    ``MODULE@FUNCTION`` with no task running FUNCTION forked yet (``forked``); None if none."""
    for index, name in enumerate(later):
        _, mark, after = name.partition(AFTER_MARK)
        if not mark or after in forked:
            return index
    return None


def _function(args: list[str]) -> str:
    """The component function a task's arguments name (``--function_to_execute``)."""
    return args[args.index("--function_to_execute") + 1] \
        if "--function_to_execute" in args[:-1] else ""


@contextlib.contextmanager
def forked_tasks(preload: tuple[str, ...] = (), first: tuple[str, ...] = ()
                 ) -> Iterator[TaskWorker | None]:
    """While open, kfp.local's ``SubprocessRunner`` runs tasks in the warm worker (see the
    module's docstring), which imports ``preload`` too (after ``PRELOAD``, while no task
    waits; ``first``: before it takes tasks). Yields the worker, or
    None when it is off or kfp's runner has no place to hook it (kfp.local then runs as it
    always does)."""
    try:
        from kfp.local import subprocess_task_handler as handler
    except ImportError:
        yield None
        return
    original = getattr(handler, "run_local_subprocess", None)
    if not enabled() or original is None or _lightweight_script() is None:
        yield None
        return
    worker = TaskWorker(preload, first)
    worker.start()

    def run_local_subprocess(full_command: list[str],
                             env_vars: dict[str, str] | None = None) -> int:
        env = {**os.environ, **(env_vars or {})}
        if worker.accepts(full_command, env):
            returncode = worker.run(full_command, env)
            if returncode is not None:
                return returncode
        return int(original(full_command=full_command, env_vars=env_vars))

    handler.run_local_subprocess = run_local_subprocess
    try:
        yield worker
    finally:
        handler.run_local_subprocess = original
        worker.close()


# ----------------------------------------------------------------------------- the worker
def _preload(names: tuple[str, ...] | list[str] = PRELOAD) -> None:
    """Import ``names`` as a task's process would (kfp in its runtime form); a module that
    fails to import is left to the tasks, which will report it themselves."""
    before = dict(os.environ)
    os.environ["_KFP_RUNTIME"] = "true"
    if any(name in TENSORFLOW for name in names):
        # as autokfp's AutoKeras engine sets them before its first TensorFlow import
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the task imports it again and fails there
            continue
    del os.environ["_KFP_RUNTIME"]
    # a module that sets a variable when imported (os.environ.setdefault) would set it in
    # the task too: each child gets these under its own environment
    _set_on_import.update({key: value for key, value in os.environ.items()
                           if before.get(key) != value})
    # a process's root logger starts bare; kfp's executor configures it in each task
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    sys.stdout.flush()
    sys.stderr.flush()
    # what was imported stays out of the collector's passes: a collection in a task would
    # otherwise touch (and so copy) every page of it
    gc.collect()
    gc.freeze()


def _receive(connection: socket.socket) -> tuple[Request, int]:
    data, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 1)
    if len(fds) != 1:
        raise OSError("a task request without its output pipe")
    while len(data) < _HEADER.size:
        more = connection.recv(_HEADER.size - len(data))
        if not more:
            raise OSError("a truncated task request")
        data += more
    (size,) = _HEADER.unpack(data)
    body = b""
    while len(body) < size:
        more = connection.recv(min(1 << 20, size - len(body)))
        if not more:
            raise OSError("a truncated task request")
        body += more
    return Request(**json.loads(body)), fds[0]


def _serve(address: str, runner_pid: int, later: tuple[str, ...] | list[str] = ()
           ) -> tuple[Request, int] | None:
    """Accept tasks and fork a child for each; report each child's exit status to its
    runner; import the modules ``later``, one at a time, while no task waits. Returns in a
    child (its task and output pipe), None in the worker when the runner is gone or ends
    it."""
    later = list(later)
    forked: set[str] = set()  # the functions of the tasks forked so far (``AFTER_MARK``)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".tmp")
    listener.listen(64)
    os.rename(address + ".tmp", address)  # the runner waits for this name: ready
    children: dict[int, socket.socket] = {}
    try:
        while os.getppid() == runner_pid:
            after = _next_import(later, forked)
            readable, _, _ = select.select([listener], [], [], 0 if after is not None else 0.05)
            if not readable and after is not None:
                # a task that comes meanwhile waits for this one module, then is forked
                # (it imports what it needs of the rest itself, as a new interpreter would)
                _preload([later.pop(after).partition(AFTER_MARK)[0]])
            if readable:
                connection, _ = listener.accept()
                try:
                    request, output = _receive(connection)
                except (OSError, ValueError, TypeError) as exc:
                    print(f"autokfp task worker: a bad request ({exc})", file=sys.stderr)
                    connection.close()
                    continue
                wanted = [name for name in request.preload
                          if name in TENSORFLOW and name not in sys.modules]
                if wanted:
                    _preload(wanted)
                sys.stdout.flush()
                sys.stderr.flush()
                forked.add(_function(request.args))
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    connection.close()
                    for other in children.values():
                        other.close()
                    return request, output
                os.close(output)
                children[pid] = connection
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                answer = children.pop(pid, None)
                if answer is not None:
                    with contextlib.suppress(OSError):
                        code = os.waitstatus_to_exitcode(status)
                        answer.sendall(json.dumps({"returncode": code}).encode() + b"\n")
                    answer.close()
    finally:
        if os.getpid() == _worker_pid:  # the runner is gone: leave nothing behind
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(address)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(address))
    return None


def _run_task(request: Request, output: int) -> NoReturn:
    """In the forked child: what ``sh -ec SCRIPT SOURCE ARGS`` runs, in this process; then
    the child exits as an interpreter does."""
    try:
        _execute(request, output)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            _exit(exc.code or 0)
        print(exc.code, file=sys.stderr)
        _exit(1)
    except KeyboardInterrupt:  # as an interpreter ends on Ctrl-C: killed by SIGINT
        _exit(None)
    except BaseException as exc:  # as the interpreter reports it, without this module's frames
        trace = start = exc.__traceback__
        while trace is not None and not trace.tb_frame.f_code.co_filename.endswith(
                os.path.join("kfp", "dsl", "executor_main.py")):
            trace = trace.tb_next
        sys.excepthook(type(exc), exc.with_traceback(trace or start), trace or start)
        _exit(1)
    _exit(0)


def _exit(code: int | None) -> NoReturn:
    """End the child as the interpreter ends a process (non-daemon threads joined, ``atexit``
    handlers run, output flushed), without tearing down every module the worker imported:
    that touches all of the worker's memory (copied page by page after the fork) and took
    seconds per task on a loaded machine. ``code`` None: die of SIGINT."""
    import atexit
    import signal

    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if code is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    os._exit(code)


def _execute(request: Request, output: int) -> None:
    import runpy
    import signal

    if "SIGINT" in _task_signals:  # a task reacts to Ctrl-C as its own interpreter would
        signal.signal(signal.SIGINT, _task_signals["SIGINT"])
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    for key, value in _set_on_import.items():
        os.environ.setdefault(key, value)
    # the task watches its parent, as it watched the runner (autokfp.lifeline)
    if RUNNER_ENV in os.environ:
        os.environ[RUNNER_ENV] = str(os.getppid())
    tempfile.tempdir = None  # from this task's environment
    program_path = tempfile.mkdtemp(prefix="tmp.")
    module_path = os.path.join(program_path, "ephemeral_component.py")
    with open(module_path, "w", encoding="utf-8") as handle:
        handle.write(request.source)
    os.environ["_KFP_RUNTIME"] = "true"
    # importing autokfp.steps starts the watch of the runner (autokfp.lifeline); a watch
    # thread of the worker is not in this process, so start this task's own
    lifeline._started = False
    if "autokfp.steps" in sys.modules:
        lifeline.watch_runner()
    # the worker only imported: the children this task starts and waits for (an engine's,
    # Evidently's) are forked from it while it runs no library's thread pool
    lifeline.allow_fork()
    if "numpy" in sys.modules:  # its global generator was seeded in the worker
        sys.modules["numpy"].random.seed()
    sys.argv = ["kfp.dsl.executor_main", "--component_module_path", module_path, *request.args]
    runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)


_worker_pid = 0
_set_on_import: dict[str, str] = {}
_task_signals: dict[str, Any] = {}  # the worker's own handlers, given back to each task


def main(argv: list[str]) -> int:
    """``python -m autokfp.edge.taskfork SOCKET RUNNER_PID [+MODULE...] [MODULE...]``: the
    worker, which imports ``PRELOAD_FIRST`` and the +modules, then takes tasks, importing
    ``PRELOAD_LATER`` and the other modules named while no task waits (those of
    ``EVIDENTLY`` named first, the rest after ``PRELOAD_LATER``, in their order; a
    MODULE@FUNCTION once a task running FUNCTION was forked)."""
    global _worker_pid
    import signal

    address, runner_pid = argv[0], int(argv[1])
    _worker_pid = os.getpid()
    # a terminal's Ctrl-C reaches the worker too (the runner's process group): the runner
    # ends it (``autokfp.edge.interrupts``), so it prints no KeyboardInterrupt of its own
    _task_signals["SIGINT"] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    names = argv[2:]
    _preload((*PRELOAD_FIRST, *(n[len(FIRST_MARK):] for n in names if n.startswith(FIRST_MARK))))
    later = [n for n in names if not n.startswith(FIRST_MARK)]
    early = [n for n in later if n in EVIDENTLY]  # before PRELOAD_LATER (``EVIDENTLY``)
    task = _serve(address, runner_pid,
                  later=(*early, *(n for n in PRELOAD_LATER if n not in early),
                         *(n for n in later if n not in early)))
    if task is None:
        return 0
    _run_task(*task)  # in a child: it ends there


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
