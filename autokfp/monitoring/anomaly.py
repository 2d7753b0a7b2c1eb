"""Anomalies in the monitoring histories (latency, error rate, prediction mean, drift share).

A robust, seasonal baseline: a point is compared with the median of earlier points at the
same phase of the season (the same hour of the day, or the same hour of the same weekday),
and the difference is scaled by the MAD of the earlier points' own differences from their
seasonal medians (x 1.4826, so it estimates a standard deviation). Medians and MADs ignore
the odd outlier in the history, and comparing like with like (Monday 09:00 with earlier
Mondays 09:00) keeps the daily or weekly rhythm from being flagged. With too few earlier
points at the same phase, the median of the most recent points is the baseline instead.

``score = (value - baseline) / max(scale, floor)``; ``|score| >= threshold`` is an anomaly.
The floor per metric (``MIN_SCALE``) keeps a perfectly flat history (an error rate of
exactly 0 for weeks) from turning a negligible change into an alarm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826
MIN_SEASONAL_PEERS = 3  # earlier points at the same phase needed for a seasonal baseline
RECENT_POINTS = 8  # points in the non-seasonal (recent median) baseline
MIN_RESIDUALS = 5  # earlier points with a baseline needed to estimate the spread
MAX_HISTORY = 1000  # points considered per metric
MIN_SCALE = {
    "error_rate": 0.01,
    "latency_mean_ms": 1.0,
    "drift_share": 0.05,
    "prediction_mean": 0.01,
    "rows": 1.0,
}
DEFAULT_MIN_SCALE = 1e-9
SEASON_DAYS = {"daily": 1, "weekly": 7}
MONITORED = ("latency_mean_ms", "error_rate", "prediction_mean", "drift_share")


@dataclass
class Anomaly:
    metric: str
    timestamp: str
    value: float
    expected: float
    scale: float
    score: float
    direction: str  # high | low
    basis: str  # seasonal | recent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.metric} = {self.value:.4g} at {self.timestamp} is unusually {self.direction} "
            f"(expected {self.expected:.4g} from the {self.basis} baseline, "
            f"robust z {self.score:+.1f})"
        )


def _phases(times: pd.Series, season: str) -> np.ndarray | None:
    if season == "daily":
        return times.dt.hour.to_numpy()
    if season == "weekly":
        return (times.dt.dayofweek * 24 + times.dt.hour).to_numpy()
    return None


def _baseline(
    values: np.ndarray, phases: np.ndarray | None, index: int, warm_up: np.ndarray
) -> tuple[float, str] | None:
    """Median of earlier points at the same phase, else of the most recent earlier points.

    While a seasonal history is still warming up (shorter than MIN_SEASONAL_PEERS seasons), a
    point with too few same-phase peers is not judged: a recent median would call every daily
    peak an anomaly. Later, missing peers mean an irregular schedule: the recent median is used.
    """
    if phases is not None:
        peers = values[:index][phases[:index] == phases[index]]
        if len(peers) >= MIN_SEASONAL_PEERS:
            return float(np.median(peers[-RECENT_POINTS:])), "seasonal"
        if warm_up[index]:
            return None
    if index >= RECENT_POINTS // 2:
        return float(np.median(values[max(0, index - RECENT_POINTS) : index])), "recent"
    return None


def score_series(
    times: pd.Series,
    values: pd.Series,
    metric: str,
    season: str = "daily",
    threshold: float = 4.0,
    only_last: bool = True,
) -> list[Anomaly]:
    """Anomalies of one metric's history (``only_last``: judge just the newest point)."""
    frame = pd.DataFrame(
        {"t": pd.to_datetime(times, utc=True), "v": pd.to_numeric(values, errors="coerce")}
    ).dropna()
    frame = frame.sort_values("t", kind="stable").tail(MAX_HISTORY).reset_index(drop=True)
    if len(frame) < 2:
        return []
    series = frame["v"].to_numpy(dtype="float64")
    phases = _phases(frame["t"], season)
    span = (frame["t"] - frame["t"].iloc[0]).to_numpy()
    warm_up = span < np.timedelta64(MIN_SEASONAL_PEERS * SEASON_DAYS.get(season, 0), "D")
    baselines: list[tuple[float, str] | None] = [
        _baseline(series, phases, i, warm_up) for i in range(len(series))
    ]
    floor = MIN_SCALE.get(metric, DEFAULT_MIN_SCALE)
    found = []
    targets = [len(series) - 1] if only_last else range(len(series))
    for i in targets:
        base = baselines[i]
        if base is None:
            continue
        residuals = np.array(
            [series[j] - b[0] for j, b in enumerate(baselines[:i]) if b is not None]
        )
        if len(residuals) < MIN_RESIDUALS:  # no reliable spread yet: no verdict
            continue
        scale = MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals))))
        scale = max(scale, floor)
        score = (series[i] - base[0]) / scale
        if abs(score) >= threshold:
            found.append(
                Anomaly(
                    metric=metric,
                    timestamp=frame["t"].iloc[i].isoformat(),
                    value=float(series[i]),
                    expected=base[0],
                    scale=scale,
                    score=float(score),
                    direction="high" if score > 0 else "low",
                    basis=base[1],
                )
            )
    return found


def detect_anomalies(
    history: pd.DataFrame,
    metrics: tuple[str, ...] = MONITORED,
    season: str = "daily",
    threshold: float = 4.0,
    only_last: bool = True,
) -> list[Anomaly]:
    """Anomalies of every monitored metric in a history frame (``timestamp`` + metric columns)."""
    if history.empty or "timestamp" not in history.columns:
        return []
    found = []
    for metric in metrics:
        if metric in history.columns:
            found += score_series(
                history["timestamp"], history[metric], metric, season, threshold, only_last
            )
    return found
