"""Fault tests: kill -9 at chosen writes, interrupts, hostile input."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]

# Every kill point of a kill -9 test runs with AUTOKFP_ALL_KILL_POINTS=1; by default (make
# test) each test runs the points named in its CORE_POINTS: the moments its atomic writes
# and its recovery depend on, so the suite stays within its time budget.
ALL_KILL_POINTS_ENV = "AUTOKFP_ALL_KILL_POINTS"


def kill_points(every: dict[str, T], core: list[str]) -> dict[str, T]:
    """``every`` kill point, or only the ``core`` ones (in ``every``'s order) unless
    AUTOKFP_ALL_KILL_POINTS is set."""
    unknown = set(core) - set(every)
    assert not unknown, f"core kill points that do not exist: {sorted(unknown)}"
    if os.environ.get(ALL_KILL_POINTS_ENV, "") not in ("", "0"):
        return dict(every)
    return {name: point for name, point in every.items() if name in core}


@contextmanager
def step_home(root: Path) -> Iterator[dict[str, str]]:
    """An AUTOKFP_HOME of its own (``root/home``) for the steps a kill test runs in
    subprocesses, and for this process, which checks it: yields the subprocesses'
    environment (no MLFLOW_/AUTOKFP_ setting of the caller's), set as this process's own
    while the block runs and restored after it."""
    from autokfp.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AUTOKFP_"))}
    env.update(AUTOKFP_HOME=str(root / "home"), HOME=str(root / "user"), PYTHONPATH=str(ROOT),
               DATAHUB_TELEMETRY_ENABLED="false", PYTHONWARNINGS="ignore")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        Settings.from_env().ensure_local_dirs()
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)


class StepWorker:
    """``python -m tests.faults.killed_step SPEC`` runs, each forked from one warm process
    that imported the common modules and ``preload`` once (``step_worker.py``): each run is
    still a process of its own that the step's SIGKILL ends. Start it in ``env`` (a stage's
    ``step_home``); ``close()`` ends it."""

    def __init__(self, env: dict[str, str], preload: list[str]) -> None:
        import json
        import subprocess
        import sys

        self._buffer = b""
        self.process = subprocess.Popen([sys.executable, "-m", "tests.faults.step_worker"],
                                         cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        self._send(preload)
        assert json.loads(self._line(600)) == {"ready": True}

    def _send(self, message: object) -> None:
        import json

        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def _line(self, timeout: float) -> bytes:
        import os
        import select
        import time

        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"the step worker did not answer within {timeout:.0f} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the step worker exited ({self.process.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def run(self, spec: Path, timeout: float):
        """What ``subprocess.run([python, -m, tests.faults.killed_step, spec],
        capture_output=True, text=True, timeout=timeout)`` returns."""
        import json
        import signal
        import subprocess

        stdout, stderr = spec.with_suffix(".stdout"), spec.with_suffix(".stderr")
        self._send({"spec": str(spec), "stdout": str(stdout), "stderr": str(stderr)})
        pid = json.loads(self._line(60))["pid"]
        try:
            returncode = json.loads(self._line(timeout))["returncode"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._line(60)
            raise subprocess.TimeoutExpired(["killed_step", str(spec)], timeout) from None
        return subprocess.CompletedProcess(["killed_step", str(spec)], returncode,
                                           stdout.read_text(errors="replace"),
                                           stderr.read_text(errors="replace"))

    def close(self) -> None:
        import subprocess

        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
