"""Fault tests: kill -9 at chosen writes, interrupts, hostile input."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

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
