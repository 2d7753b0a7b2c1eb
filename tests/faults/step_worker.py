"""A warm parent for the kill -9 tests' step processes: ``python -m tests.faults.step_worker``.

Each kill test runs a real step in a process of its own (``killed_step.py``), a dozen or more
times, and a new interpreter spent most of each run importing pandas, MLflow, DataHub and the
step's modules again (about 5 of a register run's 7 s under load). This worker imports them
once, then forks one child per run; the child runs ``killed_step.main(SPEC)`` exactly as
``python -m tests.faults.killed_step SPEC`` would (its own process, the caller's environment
and working folder, stdout and stderr to files, the write hooks installed in the child only)
and exits as an interpreter does, or dies of the SIGKILL it sends itself. The run's exit
status is the child's (-9 when killed). It is autokfp's own local-run worker
(``autokfp.edge.taskfork``) applied to these tests: the same preloaded modules, the same exit.

Protocol, one JSON object per line: stdin's first line is the list of modules to import;
the worker answers ``{"ready": true}``. Then each line ``{"spec", "stdout", "stderr"}`` is
answered with ``{"pid": N}`` once the child is forked and ``{"returncode": N}`` once it
ended. End of stdin ends the worker.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Any


def _answer(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _preload(names: list[str]) -> None:
    from autokfp.edge.taskfork import PRELOAD

    for name in (*PRELOAD, *names):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the child imports it again and fails there
            continue
    root = logging.getLogger()  # a new interpreter's root logger is bare
    for handler in list(root.handlers):
        root.removeHandler(handler)
    gc.collect()
    gc.freeze()  # the imported modules stay out of the children's collections (no page copies)


def _child(spec: str, stdout: str, stderr: str) -> None:
    """In the forked child: ``python -m tests.faults.killed_step SPEC``, then exit."""
    from autokfp.edge.taskfork import _exit

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    if "numpy" in sys.modules:  # a new interpreter seeds its global generator afresh
        sys.modules["numpy"].random.seed()
    sys.argv = ["tests.faults.killed_step", spec]
    try:
        from tests.faults import killed_step

        code = killed_step.main(spec)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught error
        traceback.print_exc()
        code = 1
    _exit(code)


def main() -> int:
    _preload(json.loads(sys.stdin.readline()))
    _answer({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request["spec"], request["stdout"], request["stderr"])
        _answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer({"returncode": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
