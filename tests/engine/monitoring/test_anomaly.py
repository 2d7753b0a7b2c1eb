"""Seasonal median + MAD: daily rhythm is not an anomaly, a real spike is."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autokfp.monitoring.anomaly import detect_anomalies, score_series


def _daily_latency(days: int = 14, per_day: int = 6, seed: int = 0) -> pd.DataFrame:
    """Latency with a strong daily peak (busy hours) and noise, every 4 hours."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2025-06-01", periods=days * per_day, freq=f"{24 // per_day}h", tz="UTC")
    busy = np.where(times.hour.isin([12, 16]), 40.0, 0.0)
    latency = 20.0 + busy + rng.normal(0, 1.5, len(times))
    return pd.DataFrame({"timestamp": times, "latency_mean_ms": latency})


def test_the_daily_peak_is_not_an_anomaly_but_a_spike_is():
    history = _daily_latency()
    assert (
        score_series(
            history["timestamp"],
            history["latency_mean_ms"],
            "latency_mean_ms",
            season="daily",
            only_last=False,
        )
        == []
    )
    spiked = history.copy()
    spiked.loc[spiked.index[-1], "latency_mean_ms"] += 30.0  # at a quiet hour
    found = detect_anomalies(spiked, season="daily")
    assert [a.metric for a in found] == ["latency_mean_ms"]
    assert found[0].direction == "high" and found[0].basis == "seasonal"
    assert "unusually high" in found[0].describe()


def test_without_seasonality_the_peaks_themselves_look_anomalous():
    history = _daily_latency()
    flagged = score_series(
        history["timestamp"],
        history["latency_mean_ms"],
        "latency_mean_ms",
        season="none",
        only_last=False,
    )
    assert flagged  # which is why the seasonal baseline is the default


def test_one_old_outlier_does_not_mask_a_new_one():
    history = _daily_latency()
    history.loc[10, "latency_mean_ms"] = 500.0
    history.loc[history.index[-1], "latency_mean_ms"] -= 15.0
    found = detect_anomalies(history, season="daily")
    assert len(found) == 1 and found[0].direction == "low"


def test_a_flat_error_rate_needs_a_real_change_to_alarm():
    times = pd.date_range("2025-06-01", periods=30, freq="6h", tz="UTC")
    history = pd.DataFrame({"timestamp": times, "error_rate": [0.0] * 30})
    history.loc[29, "error_rate"] = 0.001  # one error in a thousand: below the floor
    assert detect_anomalies(history) == []
    history.loc[29, "error_rate"] = 0.2
    (found,) = detect_anomalies(history)
    assert found.metric == "error_rate" and found.value == 0.2


def test_short_or_missing_histories_give_no_verdict():
    assert detect_anomalies(pd.DataFrame()) == []
    two = pd.DataFrame(
        {"timestamp": pd.date_range("2025-01-01", periods=2, tz="UTC"), "drift_share": [0.0, 0.9]}
    )
    assert detect_anomalies(two) == []
    gaps = pd.DataFrame(
        {
            "timestamp": pd.date_range("2025-01-01", periods=12, freq="h", tz="UTC"),
            "drift_share": [0.1, None] * 6,
        }
    )
    assert detect_anomalies(gaps) == []
