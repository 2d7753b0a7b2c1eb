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
