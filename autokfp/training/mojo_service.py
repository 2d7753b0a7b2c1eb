"""One MOJO scorer for a whole local run: a process with the JVM started once, that the
run's tasks score H2O models through over a local socket.

Each task that scores an H2O model (select, bias check, evaluation, explanation, the model
card, deploy) started its own JVM and loaded the MOJO again (``hex.genmodel`` through
JPype: 2-3 s for the JVM and 1-4 s for the model on an idle core, several times that under
load). A started JVM cannot be forked, so ``autokfp run`` starts this scorer once, beside
the task worker (``shared_mojo_scorer``), and names it in ``SCORER_ENV`` (``PID:SOCKET``); a
``MojoScorer`` in a task then loads its model there (each model once per run) and sends it
the raw rows it codes itself, so the answers are the in-process ones to the bit.

Whatever goes wrong with it, a task goes on in-process, as on a cluster where each task is
its own pod and nothing names a scorer: no variable, a socket that refuses, a scorer that
died (its socket closes: noticed at once) or answers nothing within its time limit
(``LOAD_TIMEOUT_SECS``, ``SCORE_TIMEOUT_SECS``). A time limit is a deadline for the whole
exchange (the request sent and the whole answer received), not for each send or receive: a
scorer that trickles its answer a byte at a time is left at the deadline like a silent one.
The scorer stops when the run's command is gone (``lifeline.watch_parent``, ``kill -9`` of
the command included), removing its socket.

The scorer keeps at most ``MAX_MODELS`` models loaded, and at most ``MAX_MODEL_BYTES`` of
them counted by their MOJO files' sizes (a loaded MOJO's heap is of the order of its zip; the
JVM has 1 GB), the least recently used dropped first (``ModelCache``); the most recently
used one is always kept, however large. A task's handle stays valid after its model was
dropped: its next request loads the same file again (checked unchanged by size and mtime),
so the answers are the same; a file changed since is refused, and the task scores
in-process. What grows with the models seen is only a handle table (a path and two numbers
per MOJO file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autokfp.errors import TrainingError
from autokfp.lifeline import pid_alive
from autokfp.settings import environ_set, switched_off

log = logging.getLogger(__name__)
_JVM_LOCK = threading.Lock()

SCORER_ENV = "AUTOKFP_MOJO_SCORER"  # the socket of the run's shared scorer
# the scorer's JVM may still be starting when the first task asks (a minute under load 40)
LOAD_TIMEOUT_SECS = 180.0
SCORE_TIMEOUT_SECS = 120.0  # plus SCORE_SECS_PER_ROW for each row sent
SCORE_SECS_PER_ROW = 0.002
# its socket is bound within seconds of the command's start, minutes before a task scores;
# a task that cannot see it for longer (another machine, a container's own /tmp) goes on
BIND_WAIT_SECS = 30.0
MAX_MODELS = 16  # models the scorer keeps loaded at once (least recently used dropped)
MAX_MODEL_BYTES = 256 << 20  # ... and their MOJO files' sizes at most, bar the latest one
_unusable = False  # this process gave up on the shared scorer: score in-process from now on


class ScorerUnavailable(Exception):
    """The shared scorer could not answer (absent, gone, too slow, or refused the model)."""


def h2o_jar() -> Path:
    """h2o.jar from the h2o wheel (it contains h2o-genmodel), found without importing
    H2O's client (1-4 s)."""
    import importlib.util

    spec = importlib.util.find_spec("h2o")
    jar = Path(spec.origin).parent / "backend" / "bin" / "h2o.jar" \
        if spec is not None and spec.origin else None
    if jar is None or not jar.exists():
        raise TrainingError(f"h2o.jar not found at {jar}; reinstall the h2o package "
                            "(pinned 3.46.0.11)")
    return jar


def start_jvm() -> None:
    """Start this process's JVM once (idempotent, thread-safe)."""
    import jpype
    import jpype.imports  # noqa: F401 - enables "from hex.genmodel import ..."

    with _JVM_LOCK:
        if jpype.isJVMStarted():
            return
        jpype.startJVM("-Xmx1g", "-Djava.awt.headless=true", classpath=[str(h2o_jar())],
                       convertStrings=True)


def model_description(model: Any) -> dict[str, Any]:
    """What ``MojoScorer`` needs of a loaded ``MojoModel`` to code rows and order answers."""
    names = [str(n) for n in model.getNames()]
    domains = []
    for i in range(len(names)):
        values = model.getDomainValues(i)
        domains.append(None if values is None else [str(v) for v in values])
    return {"names": names, "response": str(model.getResponseName()),
            "response_index": int(model.getResponseIdx()), "domains": domains,
            "preds_size": int(model.getPredsSize())}


def score_raw(model: Any, doubles: Any, distinct: np.ndarray, size: int) -> np.ndarray:
    """``score0`` of each raw row (one double per model column), through two reused Java
    arrays, the answer array zeroed each time as a fresh one would be."""
    width = distinct.shape[1]
    row, preds = doubles(width), doubles(size)
    zeros = np.zeros(size)
    out = np.empty((len(distinct), size), dtype="float64")
    for i in range(len(distinct)):
        row[:] = distinct[i]
        preds[:] = zeros
        out[i] = np.asarray(model.score0(row, preds), dtype="float64")
    return out


# ------------------------------------------------------------------------- a task's side
class SharedMojo:
    """A MOJO loaded in the run's shared scorer: its description, and ``score`` of raw rows.
    Raises ``ScorerUnavailable`` (and marks the scorer unusable for this process) whenever
    the scorer does not answer properly."""

    def __init__(self, mojo_path: Path, address: str) -> None:
        self._connection: socket.socket | None = None
        self._connection = _connect(address)
        self._lock = threading.Lock()
        answer = self._ask(("load", str(Path(mojo_path).resolve())), LOAD_TIMEOUT_SECS)
        self.handle: int = answer["handle"]
        self.description: dict[str, Any] = answer["description"]

    def score(self, distinct: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(distinct, dtype="float64")
        answer = self._ask(("score", self.handle, rows),
                           SCORE_TIMEOUT_SECS + SCORE_SECS_PER_ROW * len(rows))
        out = answer["scores"]
        if not isinstance(out, np.ndarray) or out.shape[0] != len(rows):
            raise _give_up("it answered with the wrong number of rows")
        return out

    def _ask(self, request: tuple, timeout: float) -> dict[str, Any]:
        assert self._connection is not None
        with self._lock:
            # the whole exchange within ``timeout``: a scorer that stopped reading must not
            # hold a task in a send, nor one that trickles its answer in its receives
            deadline = time.monotonic() + timeout
            try:
                _send(self._connection, request, deadline)
                status, answer = _receive(self._connection, deadline)
            except TimeoutError:
                self.close()
                raise _give_up(f"no answer within {timeout:.0f} s") from None
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self.close()
                raise _give_up(f"it is gone ({type(exc).__name__}: {exc})") from None
        if status != "ok":
            raise _give_up(f"it refused: {answer}")
        return dict(answer)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()

    def __del__(self) -> None:
        self.close()


_HEADER = struct.Struct("!Q")


def _until(connection: socket.socket, deadline: float | None) -> None:
    """Give the connection's next operation the time left before ``deadline`` (None: no
    limit); TimeoutError when none is left."""
    if deadline is None:
        connection.settimeout(None)
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    connection.settimeout(left)


def _send(connection: socket.socket, message: Any, deadline: float | None = None) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _until(connection, deadline)  # sendall's timeout bounds the whole call (Python >= 3.5)
    connection.sendall(_HEADER.pack(len(body)) + body)


def _receive_exactly(connection: socket.socket, size: int,
                     deadline: float | None = None) -> bytes:
    """``size`` bytes, all of them by ``deadline``: each receive gets only the time left."""
    chunks, left = [], size
    while left:
        _until(connection, deadline)
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(connection: socket.socket, deadline: float | None = None,
             body_secs: float | None = None) -> Any:
    """One message, whole by ``deadline``; with ``body_secs`` (and no deadline) the wait for
    its first bytes is unlimited, and the rest must follow within ``body_secs``."""
    (size,) = _HEADER.unpack(_receive_exactly(connection, _HEADER.size, deadline))
    if deadline is None and body_secs is not None:
        deadline = time.monotonic() + body_secs
    # only this user's processes reach the socket (a 0700 folder of the run's command)
    return pickle.loads(_receive_exactly(connection, size, deadline))  # noqa: S301


def _connect(named: str) -> socket.socket:
    """A connection to the scorer ``SCORER_ENV`` names (``PID:SOCKET``), waiting while its
    socket is not there yet (its process starts beside the run's first tasks) but the
    process runs."""
    pid, _, address = named.partition(":")
    deadline = time.monotonic() + BIND_WAIT_SECS
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(10.0)
            connection.connect(address)
            return connection
        except OSError as exc:
            connection.close()
            if not pid.isdigit() or not pid_alive(int(pid)) or time.monotonic() > deadline:
                raise _give_up(f"cannot reach it at {address} ({exc})") from None
            time.sleep(0.1)


def _give_up(reason: str) -> ScorerUnavailable:
    global _unusable
    _unusable = True
    log.warning("the run's shared MOJO scorer: %s; scoring in this process instead", reason)
    return ScorerUnavailable(reason)


def shared_address() -> str | None:
    """The run's shared scorer (``PID:SOCKET``), if this process may use one."""
    named = os.environ.get(SCORER_ENV, "")
    pid, _, address = named.partition(":")
    if _unusable or not pid.isdigit() or int(pid) <= 1 or not address:
        return None  # none, or switched off ("0")
    return named


# ------------------------------------------------------------------ the scorer's own side
@dataclass(frozen=True)
class _Loaded:
    model: Any
    description: dict[str, Any]
    lock: threading.Lock  # one scoring at a time per model (its two reused Java arrays)
    size: int  # its MOJO file's bytes: the estimate of its heap


class ModelCache:
    """The scorer's loaded models, by handle: at most ``max_models`` of them and at most
    ``max_bytes`` of their MOJO files' sizes (the most recently used one always kept),
    the least recently used dropped first. A handle names one MOJO file as it was when
    first loaded (path, mtime, size) for the scorer's life; a dropped model is loaded
    again from it when asked for (refused if the file changed since). Thread-safe: loads
    one at a time, look-ups of loaded models meanwhile."""

    def __init__(self, load_model: Callable[[str], Any],
                 describe: Callable[[Any], dict[str, Any]], max_models: int = MAX_MODELS,
                 max_bytes: int = MAX_MODEL_BYTES) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, not {max_models}")
        self._load_model, self._describe = load_model, describe
        self.max_models, self.max_bytes = max_models, max_bytes
        self._lock = threading.Lock()  # the tables below
        self._loading = threading.Lock()  # one load at a time (as the JVM's class loading)
        self._handles: dict[tuple[str, int, int], int] = {}
        self._files: list[tuple[str, int, int]] = []  # handle -> (path, mtime_ns, size)
        self._loaded: OrderedDict[int, _Loaded] = OrderedDict()  # least recently used first
        self.loads = 0  # models loaded (again) in all

    @property
    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._loaded.values())

    @property
    def loaded_handles(self) -> list[int]:
        """The handles of the models loaded now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def load(self, path: str) -> dict[str, Any]:
        """The handle of the MOJO file ``path`` as it is now, and its description, loaded
        unless it is loaded already."""
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            handle = self._handles.get(key)
            if handle is None:
                handle = self._handles[key] = len(self._files)
                self._files.append(key)
        return {"handle": handle, "description": self.model(handle).description}

    def model(self, handle: int) -> _Loaded:
        """The loaded model of ``handle`` (loaded again if it was dropped)."""
        if not isinstance(handle, int) or not 0 <= handle < len(self._files):
            raise KeyError(f"no model has handle {handle!r}")
        entry = self._used(handle)
        if entry is not None:
            return entry
        with self._loading:
            entry = self._used(handle)  # another thread loaded it meanwhile
            if entry is not None:
                return entry
            path, mtime_ns, size = self._files[handle]
            stat = os.stat(path)
            if (stat.st_mtime_ns, stat.st_size) != (mtime_ns, size):
                raise ValueError(f"{path} changed since it was first loaded; load it anew")
            model = self._load_model(path)
            entry = _Loaded(model, self._describe(model), threading.Lock(), size)
            with self._lock:
                self.loads += 1
                self._loaded[handle] = entry
                self._drop_over_bounds()
            return entry

    def _used(self, handle: int) -> _Loaded | None:
        with self._lock:
            entry = self._loaded.get(handle)
            if entry is not None:
                self._loaded.move_to_end(handle)
            return entry

    def _drop_over_bounds(self) -> None:
        """Drop the least recently used models while over a bound, keeping the latest (a
        model being scored meanwhile finishes: its thread holds it)."""
        total = sum(entry.size for entry in self._loaded.values())
        while len(self._loaded) > 1 and (len(self._loaded) > self.max_models
                                         or total > self.max_bytes):
            handle, entry = self._loaded.popitem(last=False)
            total -= entry.size
            log.info("MOJO scorer: dropped model %s (%s, %d bytes), least recently used",
                     handle, self._files[handle][0], entry.size)


def _answer(connection: socket.socket, cache: ModelCache, doubles: Any) -> None:
    """Answer one task's requests until it closes its connection. A request must arrive
    whole within ``LOAD_TIMEOUT_SECS`` of its first bytes, and its answer be taken within
    ``SCORE_TIMEOUT_SECS``: a task that stopped mid-way holds no thread for ever."""
    with connection:
        while True:
            try:
                request = _receive(connection, body_secs=LOAD_TIMEOUT_SECS)
            except (EOFError, OSError, pickle.UnpicklingError):
                return
            try:
                if request[0] == "load":
                    reply: tuple = ("ok", cache.load(request[1]))
                elif request[0] == "score":
                    entry = cache.model(request[1])
                    with entry.lock:
                        scores = score_raw(entry.model, doubles, request[2],
                                           entry.description["preds_size"])
                    reply = ("ok", {"scores": scores})
                else:
                    reply = ("error", f"unknown request {request[0]!r}")
            except Exception as exc:  # noqa: BLE001 - the task scores it itself
                reply = ("error", f"{type(exc).__name__}: {exc}")
            try:
                _send(connection, reply, time.monotonic() + SCORE_TIMEOUT_SECS)
            except OSError:
                return


def serve(address: str, cache: ModelCache | None = None, doubles: Any = None,
          stop: threading.Event | None = None) -> None:
    """Accept connections on ``address`` (bound before the JVM starts, so tasks that come
    meanwhile wait for it), one thread each; each model is loaded once (while in
    ``cache``: ``ModelCache``) and scored under its own lock. ``cache`` and ``doubles``
    (a Java double array type) default to MOJOs loaded in this process's JVM; ``stop``
    ends the accepting (within half a second)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(32)
    if cache is None or doubles is None:
        start_jvm()
        from hex.genmodel import MojoModel  # type: ignore[import-not-found]
        from jpype import JArray, JDouble

        cache = cache or ModelCache(MojoModel.load, model_description)
        doubles = doubles or JArray(JDouble)
    listener.settimeout(0.5)
    with listener:
        while stop is None or not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            threading.Thread(target=_answer, args=(connection, cache, doubles),
                             daemon=True).start()


@contextlib.contextmanager
def shared_mojo_scorer(wanted: bool = True) -> Iterator[str | None]:
    """While open (a local run that has H2O among its engines), the run's shared scorer
    runs and ``SCORER_ENV`` names it for the tasks started meanwhile. Yields its address,
    None when not wanted or switched off (``AUTOKFP_MOJO_SCORER=0`` beforehand)."""
    if not wanted or switched_off(os.environ.get(SCORER_ENV)):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="autokfp-scorer-"))  # 0700: this user's only
    address = str(folder / "socket")
    process = subprocess.Popen(
        [sys.executable, "-m", "autokfp.training.mojo_service", address, str(os.getpid())],
        stdin=subprocess.DEVNULL)
    try:
        with environ_set(SCORER_ENV, f"{process.pid}:{address}"):
            yield address
    finally:
        process.kill()
        process.wait()
        with contextlib.suppress(OSError):
            os.unlink(address)
        with contextlib.suppress(OSError):
            folder.rmdir()


def main(argv: list[str]) -> int:
    """``python -m autokfp.training.mojo_service SOCKET PARENT_PID``: the shared scorer,
    until its parent (the run's command) is gone."""
    import signal

    from autokfp.lifeline import watch_parent

    address = argv[0]

    def remove_socket() -> None:
        with contextlib.suppress(OSError):
            os.unlink(address)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(address))

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command ends it (a terminal's Ctrl-C)
    # the command gone (kill -9 included): the socket's folder removed, the process (and
    # the JVM in it) ended within a poll interval
    watch_parent(int(argv[1]), on_orphaned=remove_socket)
    serve(address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
