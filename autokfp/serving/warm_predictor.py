"""A warm start for the local predictor: a process that has imported the serving stack forks
each predictor a local run's deploy step starts.

The local deploy step starts its predictor as a new interpreter (``python -m
autokfp.serving``: it may outlive the run, so it is no child of the run's task worker), which
imports KServe, the model package's modules and shap before it loads the model: 17.5 s of
wine's 23 s deploy step on a near-idle machine (session 15's baseline), several times that
under load. ``warm_predictors`` (the local runner, ``autokfp.edge.local``) starts this
module's process once the run's engines have finished (the first task that loads model
packages: ``select_model``), so its imports run on the core the single-threaded tasks after
training leave free, never beside an engine's search. The deploy step asks it for a
predictor (``fork_predictor``): it forks, the fork leaves its session and forks again (the
predictor is nobody's child in the run: it outlives the run as a new interpreter would,
and its exit is reaped by the system), and the grandchild runs exactly what ``python -m
autokfp.serving`` runs, with the deploy step's environment, working folder and log file.

Only imported, never run, here (no thread of a library's pool, no JVM: JPype's starts in
the predictor): a process that has a thread Python did not start refuses to fork, and the
deploy step starts its predictor as a new interpreter, as it does when no warm process is
named (a pod, a notebook, ``AUTOKFP_WARM_PREDICTOR=0``), when it is gone, or when it does
not answer in time. The predictor serves the same model the same way either way.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autokfp.settings import environ_set, switched_off

log = logging.getLogger(__name__)

WARM_ENV = "AUTOKFP_WARM_PREDICTOR"  # the socket a local run's warm process listens on; 0: off
# what ``python -m autokfp.serving`` imports before it loads a model (its log's import
# profile: shap 7.4 s, the predictor's KServe 5.3 s, the model package's modules 2.9 s idle)
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "autokfp.serving.__main__",
    "autokfp.serving.predictor",
    "autokfp.modeling.model_package",
    "autokfp.serving.prediction_log",
    "autokfp.training.mojo",
    "shap",
    "autokfp.governance.explain",
)
# the deploy step waits this long for a warm process that is still importing (it started
# before the deploy step: a new interpreter would import the same from the start)
READY_WAIT_SECS = 120.0
ANSWER_TIMEOUT_SECS = 30.0


class ForkedPredictor:
    """A predictor the warm process forked: not this process's child, so watched by its pid
    (the ``subprocess.Popen`` calls the deploy step makes: ``poll``, ``wait``, ``pid``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        from autokfp.lifeline import pid_alive

        if self.returncode is None and not pid_alive(self.pid):
            self.returncode = -1  # its exit status went to whoever reaped it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"predictor {self.pid}", timeout or 0.0)
            time.sleep(0.1)
        return int(self.returncode or 0)


# ------------------------------------------------------------------ the local runner's side
@contextlib.contextmanager
def warm_predictors(log_path: Path | None = None,
                    preload: tuple[str, ...] = PRELOAD) -> Iterator[Any]:
    """While open, ``WARM_ENV`` names a socket the run's tasks see; the returned handle's
    ``start()`` (called by the runner once the engines are done) starts the warm process on
    it, importing ``preload`` first, its output to ``log_path`` (default: this process's).
    Closing ends the process
    (predictors it forked run on). Yields None when switched off
    (``AUTOKFP_WARM_PREDICTOR=0`` beforehand) or where processes cannot fork."""
    if switched_off(os.environ.get(WARM_ENV)) or not hasattr(os, "fork"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="autokfp-predictor-"))  # 0700: this user's only
    handle = _WarmProcess(str(folder / "socket"), log_path, preload)
    try:
        with environ_set(WARM_ENV, handle.address):
            yield handle
    finally:
        handle.close()
        for name in ("socket", "pid"):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


class _WarmProcess:
    def __init__(self, address: str, log_path: Path | None = None,
                 preload: tuple[str, ...] = PRELOAD) -> None:
        self.address = address
        self.log_path = log_path
        self.preload = preload
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the warm process (once); its pid file says it is coming."""
        if self._process is not None:
            return
        output = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "autokfp.serving.warm_predictor", self.address,
                 str(os.getpid()), *self.preload], stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT if output else None)
        finally:
            if output:
                output.close()
        Path(self.address).with_name("pid").write_text(str(self._process.pid))

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ the deploy step's side
def fork_predictor(env: dict[str, str], log_file: Path | None) -> ForkedPredictor | None:
    """A predictor forked by the run's warm process with ``env`` (the environment a new
    interpreter would get) and its output appended to ``log_file``; None when there is no
    warm process to ask (the caller starts a new interpreter): none named, gone, refusing,
    or not ready within ``READY_WAIT_SECS`` of being asked."""
    address = os.environ.get(WARM_ENV, "")
    if not address or switched_off(address):
        return None
    pid_file = Path(address).with_name("pid")
    deadline = time.monotonic() + READY_WAIT_SECS
    while not os.path.exists(address):
        # started and still importing: wait for it (it began before this step did)
        from autokfp.lifeline import pid_alive

        started = pid_file.read_text().strip() if pid_file.exists() else ""
        if not started.isdigit() or not pid_alive(int(started)) \
                or time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    request = json.dumps({"env": {k: v for k, v in env.items() if k != WARM_ENV},
                          "cwd": os.getcwd(),
                          "log_file": str(log_file) if log_file else ""}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(ANSWER_TIMEOUT_SECS)
            connection.connect(address)
            connection.sendall(request + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(256)
                if not chunk:
                    break
                answer += chunk
        pid = json.loads(answer or b"{}").get("pid")
    except (OSError, ValueError) as exc:
        log.warning("the warm predictor process did not answer (%s): the predictor starts as "
                    "a new interpreter", exc)
        return None
    if not isinstance(pid, int) or pid <= 0:
        log.info("the warm predictor process refused (%s): the predictor starts as a new "
                 "interpreter", answer.decode(errors="replace").strip()[:200])
        return None
    return ForkedPredictor(pid)


# ------------------------------------------------------------------ the warm process
def _preload(names: tuple[str, ...] | list[str] = PRELOAD) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the predictor imports it again and says why
            continue
    root = logging.getLogger()
    for handler in list(root.handlers):  # the predictor configures its own logging
        root.removeHandler(handler)
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    gc.freeze()  # its pages stay shared with the predictors
    global _imported_threads
    from autokfp.lifeline import native_threads

    _imported_threads = native_threads() or 0


def _refusal() -> str:
    """Why this process must not fork now ("" when it may): a thread Python started, or a
    library's thread beyond those its import left idle (OpenBLAS's pool, as in the task
    worker, ``autokfp.edge.taskfork``): it would be missing in the fork, holding what it
    held."""
    import threading

    from autokfp.lifeline import native_threads

    if threading.active_count() > 1:
        return f"{threading.active_count()} Python threads"
    found = native_threads()
    if found is None or found > _imported_threads:
        return f"{found} native threads, {_imported_threads} after the imports"
    return ""


def _serve(address: str, runner_pid: int) -> dict[str, Any] | None:
    """Answer requests until the runner is gone; returns in a predictor (its request)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".tmp")
    listener.listen(8)
    os.rename(address + ".tmp", address)  # ready
    try:
        while os.getppid() == runner_pid:
            readable, _, _ = select.select([listener], [], [], 0.2)
            if not readable:
                continue
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(ANSWER_TIMEOUT_SECS)
                try:
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = connection.recv(1 << 16)
                        if not chunk:
                            raise OSError("a truncated request")
                        data += chunk
                    request = json.loads(data)
                except (OSError, ValueError) as exc:
                    print(f"autokfp warm predictor: a bad request ({exc})", file=sys.stderr)
                    continue
                refusal = _refusal()
                if refusal:
                    connection.sendall(json.dumps({"refused": refusal}).encode() + b"\n")
                    continue
                reader, writer = os.pipe()
                sys.stdout.flush()
                sys.stderr.flush()
                child = os.fork()
                if child == 0:  # leaves the session, forks the predictor, reports its pid
                    os.close(reader)
                    listener.close()
                    connection.close()
                    os.setsid()
                    predictor = os.fork()
                    if predictor == 0:
                        os.close(writer)
                        return dict(request)
                    os.write(writer, str(predictor).encode())
                    os._exit(0)
                os.close(writer)
                with os.fdopen(reader, "rb") as pipe:
                    pid = pipe.read().decode().strip()
                os.waitpid(child, 0)
                connection.sendall(json.dumps({"pid": int(pid) if pid.isdigit() else 0})
                                   .encode() + b"\n")
    finally:
        if os.getpid() == _warm_pid:  # the runner is gone (kill -9 too): nothing left
            listener.close()
            for leftover in (address, os.path.join(os.path.dirname(address), "pid")):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(address))
    return None


def _run_predictor(request: dict[str, Any]) -> int:
    """In the predictor: what ``python -m autokfp.serving`` runs, as a new interpreter would
    run it (its environment, working folder, output, signals)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log_file = request.get("log_file") or os.devnull
    output = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.close(null)
    os.chdir(request.get("cwd") or "/")
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # from the predictor's environment
    if "numpy" in sys.modules:  # its global generator was seeded here
        sys.modules["numpy"].random.seed()
    sys.argv = [sys.argv[0]]
    from autokfp.serving.__main__ import _end, main

    try:
        code = main([])
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then the exit
        import traceback

        traceback.print_exc()
        code = 1
    _end(code)
    return code  # not reached: _end exits


_warm_pid = 0
_imported_threads = 0  # library threads the imports left (idle pools), see ``_refusal``


def main(argv: list[str]) -> int:
    """``python -m autokfp.serving.warm_predictor SOCKET RUNNER_PID [MODULE...]``: import
    the modules (default ``PRELOAD``: the serving stack), then fork a predictor per request
    until the runner is gone."""
    global _warm_pid
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner ends it (a terminal's Ctrl-C)
    _warm_pid = os.getpid()
    runner = int(argv[1])
    _preload(argv[2:] or PRELOAD)
    if os.getppid() != runner:  # gone while this imported: leave nothing behind
        for leftover in (argv[0], os.path.join(os.path.dirname(argv[0]), "pid")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(argv[0]))
        return 0
    request = _serve(argv[0], runner)
    if request is None:
        return 0
    return _run_predictor(request)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
