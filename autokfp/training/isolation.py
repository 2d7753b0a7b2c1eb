"""Run one engine in a child process, and mark a candidate that could not be trained.

An engine that crashes, runs out of memory or overruns its time must not take the run
down: the other engine's leader can still win. So a training component runs its engine in
a child Python process. An exception there, a kill by the out-of-memory killer (the
child, holding the engine's memory, is what the kernel picks) or a hard timeout all end
the same way: the component writes ``candidate.json`` with ``status: failed`` and the
reason into its model output, and selection records the reason and ranks the others.

The child runs ``_main``: the function named in the request, its outcome written next to
it. It is forked from the component's process when that process is a local task the warm
worker forked and still runs no library's thread pool, or with ``AUTOKFP_ENGINE_FORK=1``;
otherwise (a notebook, a test worker, a pod, ``AUTOKFP_ENGINE_FORK=0``) it is a new
interpreter (see ``lifeline.start_child``, shared with Evidently's child, for why).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from autokfp.errors import AutokfpError

log = logging.getLogger(__name__)

CANDIDATE_FILE = "candidate.json"
# a file where the child lists processes it started outside its own process group (H2O's
# JVM runs in a session of its own); the parent kills whatever is left of them
CHILD_PIDS_ENV = "AUTOKFP_CHILD_PIDS"
FAILED, SKIPPED = "failed", "skipped"


class EngineFailure(AutokfpError):
    """An engine's child process raised, was killed or overran its time."""

    def __init__(self, message: str, kind: str, error_type: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.error_type = error_type


# ------------------------------------------------------------------------------ markers


def write_candidate_marker(model_path: str | os.PathLike, engine: str, status: str, reason: str,
                           **extra: Any) -> dict[str, Any]:
    """Leave ``candidate.json`` (and nothing else) in an engine's model output folder.

    The marker is written in a folder of its own that then replaces the output folder whole
    (``storage.local.replace_dir``): a half-written model must not look usable, and a kill
    half-way leaves the old folder or the marker, never part of either.
    """
    import shutil

    from autokfp.storage.local import replace_dir

    folder = Path(os.path.abspath(model_path))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.marker"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    marker = {"engine": engine, "status": status, "reason": reason, **extra}
    (staging / CANDIDATE_FILE).write_text(json.dumps(marker, indent=2, default=str))
    replace_dir(staging, folder)
    return marker


def read_candidate_marker(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a candidate that was not trained, or None for a model folder."""
    path = Path(model_path) / CANDIDATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- isolation


def engine_timeout(max_runtime_secs: float) -> float:
    """How long an engine's child (training, or a refit) may run with a budget of
    ``max_runtime_secs`` before ``run_isolated`` stops it."""
    return 3 * max_runtime_secs + 600


def run_isolated(function: str, kwargs: dict[str, Any], timeout: float | None = None) -> Any:
    """Call ``module:function(**kwargs)`` in a child process and return its JSON result.

    Raises EngineFailure with ``kind`` ``error`` (it raised; the message is its own),
    ``killed`` (a signal, most often the out-of-memory killer) or ``timeout``.
    """
    with tempfile.TemporaryDirectory(prefix="autokfp-isolated-") as scratch:
        request = Path(scratch) / "request.json"
        outcome = Path(scratch) / "outcome.json"
        request.write_text(json.dumps({"function": function, "kwargs": kwargs,
                                       "outcome": str(outcome)}, default=str))
        started = time.monotonic()
        pids = Path(scratch) / "pids"
        process = _start_child(request, pids)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise EngineFailure(f"{function} ran for more than {timeout:.0f}s and was stopped",
                                "timeout") from None
        except BaseException:
            _kill_group(process)
            raise
        finally:
            _kill_group(process, only_children=True)
            _kill_listed(pids)
        seconds = time.monotonic() - started
        if outcome.exists():
            result = json.loads(outcome.read_text())
            if result.get("ok"):
                return result["result"]
            raise EngineFailure(f"{result['error_type']}: {result['message']}", "error",
                                result["error_type"])
        if code < 0 or code == 137:
            number = -code if code < 0 else 9
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ \
                else str(number)
            hint = (" (SIGKILL: most often the out-of-memory killer; give the training task "
                    "more memory or lower the budget)") if number == signal.SIGKILL else ""
            raise EngineFailure(f"the engine process was killed by {name} after {seconds:.0f}s"
                                f"{hint}", "killed")
        raise EngineFailure(f"the engine process exited with code {code} after {seconds:.0f}s "
                            "without a result (a crash in native code?)", "killed")


def _start_child(request: Path, pids: Path) -> Any:
    """The engine's child (``lifeline.start_child``): a session of its own, watching this
    process (``_main``); forked from this process when ``lifeline.fork_wanted`` (a local
    task forked from the warm worker with no native thread yet, or ``AUTOKFP_ENGINE_FORK=1``),
    else a new interpreter running ``_child`` (a child forked from a process whose
    TensorFlow or OpenMP thread pools had run hung in CI)."""
    from autokfp.lifeline import start_child

    return start_child("autokfp.training.isolation:_child", [str(request)],
                       env={CHILD_PIDS_ENV: str(pids)})


def _kill_group(process: Any, only_children: bool = False) -> None:
    """Stop the child and anything left in its process group (an H2O JVM, for instance)."""
    if only_children and process.poll() is None:
        return
    try:  # the child leads its own session, so its pid is the group id
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=10)


def _kill_listed(pids: Path) -> None:
    """Kill the processes the child listed (normally already gone after a clean exit)."""
    if not pids.exists():
        return
    for line in pids.read_text().split():
        try:
            # a pid can be reused once its process is gone: kill only what is still H2O's
            command = Path(f"/proc/{int(line)}/cmdline").read_bytes()
            if b"h2o" not in command:
                continue
            os.kill(int(line), signal.SIGKILL)
            log.info("stopped process %s that the engine left behind", line)
        except (ValueError, OSError):
            continue


def _orphaned() -> None:
    """The task that started this engine is gone: stop the JVM and this session."""
    pids = os.environ.get(CHILD_PIDS_ENV)
    if pids:
        _kill_listed(Path(pids))
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)  # this child leads its own session
    except OSError:
        pass


def _main(request_path: str) -> int:
    from autokfp.lifeline import watch_parent

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    watch_parent(on_orphaned=_orphaned)
    request = json.loads(Path(request_path).read_text())
    outcome = Path(request["outcome"])
    module_name, _, name = request["function"].partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
        result = function(**request["kwargs"])
        payload = {"ok": True, "result": result}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        traceback.print_exc()
        payload = {"ok": False, "error_type": type(exc).__name__, "message": str(exc),
                   "traceback": traceback.format_exc()[-4000:]}
        code = 1
    temp = outcome.with_suffix(".tmp")
    temp.write_text(json.dumps(payload, default=str))
    os.replace(temp, outcome)
    return code


def _child(argv: list[str]) -> int:
    """The child ``_start_child`` starts: ``_main`` on the request file."""
    return _main(argv[0])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
