"""What the fairness modules share: check statuses, the ``Check`` record, margins."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("autokfp.governance.fairness")

PASS, FAIL, WARN, NOT_RUN, INFO = "pass", "fail", "warn", "not_run", "info"
# safety margins tried in turn: the fitted thresholds aim inside the limit by this fraction,
# so the held-out re-check (other rows than the fitting ones) lands inside it too
MARGINS = (0.25, 0.5, 0.75)


@dataclass
class Check:
    """One fairness check: what, on which column, its status, value and limit, and why."""

    name: str
    column: str | None
    status: str
    detail: str
    value: float | None = None
    limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number
