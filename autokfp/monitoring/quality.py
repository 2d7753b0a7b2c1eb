"""Checks of the live inputs: are the logged requests fit to judge (and retrain) on?

Compared with the model's feature plan and its reference sample: required columns that
are absent, rows whose inputs are all missing, missing values far above the reference's,
numbers outside the reference range, categories the reference never had, repeated
request ids. ``bad_fraction`` is the share of rows that cannot be used (a required column
absent, or every input missing); above ``monitoring.max_bad_input_fraction`` the window is
garbage for retraining purposes, and the decision says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MISSING_INCREASE = 0.2  # absolute increase of a column's missing share that is worth a warning
OUT_OF_RANGE = 0.05  # share of numbers outside the reference range worth a warning
UNSEEN = 0.05  # share of categories the reference never had worth a warning


@dataclass
class Check:
    check: str
    status: str  # pass | warn | fail
    detail: str


@dataclass
class InputQuality:
    rows: int
    bad_rows: int
    checks: list[Check] = field(default_factory=list)
    max_bad_fraction: float = 0.2

    @property
    def bad_fraction(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0

    @property
    def usable(self) -> bool:
        return self.rows > 0 and self.bad_fraction <= self.max_bad_fraction

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_fraction": self.bad_fraction,
            "max_bad_fraction": self.max_bad_fraction,
            "usable": self.usable,
            "checks": [asdict(c) for c in self.checks],
        }


def check_inputs(
    window: pd.DataFrame,
    required: list[str],
    kinds: dict[str, str],
    reference: pd.DataFrame | None,
    max_bad_fraction: float = 0.2,
) -> InputQuality:
    """Check the window's inputs against the model's required columns and the reference."""
    rows = len(window)
    result = InputQuality(rows=rows, bad_rows=0, max_bad_fraction=max_bad_fraction)
    if rows == 0:
        result.checks.append(Check("rows", "fail", "the window holds no rows"))
        return result
    present = _check_rows(window, required, result)
    if reference is None or reference.empty:
        return result
    result.checks += _compare_with_reference(window, reference, present, kinds)
    return result


def _check_rows(window: pd.DataFrame, required: list[str], result: InputQuality) -> list[str]:
    """The required columns, rows with every input missing, and rows logged twice (checks
    and bad rows into ``result``). Returns the required columns present."""
    rows = len(window)
    max_bad_fraction = result.max_bad_fraction
    absent = [c for c in required if c not in window.columns]
    present = [c for c in required if c in window.columns]
    if absent:
        result.checks.append(
            Check(
                "required_columns",
                "fail",
                f"column(s) {absent} the model needs are absent from every logged row",
            )
        )
        result.bad_rows = rows
    else:
        result.checks.append(
            Check("required_columns", "pass", f"all {len(required)} input columns present")
        )
    if present:
        all_missing = window[present].isna().all(axis=1)
        count = int(all_missing.sum())
        if not absent:
            result.bad_rows = count
        status = "fail" if count / rows > max_bad_fraction else ("warn" if count else "pass")
        result.checks.append(
            Check("empty_rows", status, f"{count} of {rows} rows have every input missing")
        )
    if "request_id" in window.columns:
        # the same request logged twice (a batch written again) repeats id, inputs and time
        twice = int(window.duplicated().sum())
        result.checks.append(
            Check(
                "duplicates",
                "warn" if twice else "pass",
                f"{twice} rows were logged twice" if twice else "no row logged twice",
            )
        )
    return present


def _compare_with_reference(window: pd.DataFrame, reference: pd.DataFrame, present: list[str],
                            kinds: dict[str, str]) -> list[Check]:
    """Missing values, numbers out of range and unseen categories, against the reference."""
    from autokfp.monitoring.drift import CATEGORICAL, NUMERICAL

    missing_warnings, range_warnings, unseen_warnings = [], [], []
    for column in present:
        if column not in reference.columns:
            continue
        live_missing = float(window[column].isna().mean())
        ref_missing = float(reference[column].isna().mean())
        if live_missing - ref_missing >= MISSING_INCREASE:
            missing_warnings.append(f"{column} {live_missing:.0%} (reference {ref_missing:.0%})")
        kind = kinds.get(column)
        if kind == NUMERICAL:
            warning = _out_of_range(column, window[column], reference[column])
            if warning:
                range_warnings.append(warning)
        elif kind == CATEGORICAL:
            warning = _unseen_categories(column, window[column], reference[column])
            if warning:
                unseen_warnings.append(warning)
    return [
        Check(
            name,
            "warn" if found else "pass",
            f"{what}: {'; '.join(found)}" if found else f"no {what}",
        )
        for name, found, what in (
            ("missing_values", missing_warnings, "more missing values than the reference"),
            ("out_of_range", range_warnings, "numbers outside the reference range"),
            ("unseen_categories", unseen_warnings, "categories the reference never had"),
        )
    ]


def _out_of_range(column: str, window: pd.Series, reference: pd.Series) -> str | None:
    live = pd.to_numeric(window, errors="coerce").to_numpy(dtype="float64")
    ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype="float64")
    live, ref = live[np.isfinite(live)], ref[np.isfinite(ref)]
    if len(live) and len(ref):
        outside = float(np.mean((live < ref.min()) | (live > ref.max())))
        if outside >= OUT_OF_RANGE:
            return f"{column} {outside:.0%} outside [{ref.min():.4g}, {ref.max():.4g}]"
    return None


def _unseen_categories(column: str, window: pd.Series, reference: pd.Series) -> str | None:
    known = set(reference.dropna().astype(str).unique())
    live_values = window.dropna().astype(str)
    if len(live_values):
        unseen = float((~live_values.isin(known)).mean())
        if unseen >= UNSEEN:
            new = sorted(set(live_values.unique()) - known)[:5]
            return f"{column} {unseen:.0%} unseen (e.g. {new})"
    return None
