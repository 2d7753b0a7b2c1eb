"""The retraining decision: which triggers fired, which could not be judged, and why.

Triggers (thresholds in ``monitoring``):

* **drift**: the share of the champion's input features that drifted reaches
  ``drift_share`` (optionally, ``prediction_drift_triggers``: the predictions drifted);
* **performance**: on labelled live rows, the champion's primary metric is worse than its
  held-out test value by at least ``performance_drop`` of that value;
* **new data**: ``min_new_rows`` labelled rows arrived for the champion;
* **schedule**: the champion is older than ``retrain_every_days``.

Data-driven triggers (drift, performance, new data) are only trusted on a window worth
judging: at least ``min_window_rows`` rows whose inputs pass the quality checks. Otherwise
they are reported as blocked with the reason; no retraining happens on garbage. The
schedule trigger does not depend on live data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TriggerCheck:
    trigger: str  # drift | prediction_drift | performance | new_data | schedule
    evaluated: bool
    fired: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class RetrainDecision:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    checks: list[TriggerCheck] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.retrain:
            return "retrain: " + "; ".join(self.reasons)
        why = (
            self.blockers
            or [c.detail for c in self.checks if c.evaluated]
            or ["no trigger is enabled"]
        )
        return "no retraining: " + "; ".join(why)

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrain": self.retrain,
            "summary": self.summary,
            "reasons": list(self.reasons),
            "blockers": list(self.blockers),
            "checks": [asdict(c) for c in self.checks],
        }


def decide(
    spec: Any,
    *,
    has_champion: bool,
    window_rows: int,
    quality_usable: bool,
    quality_detail: str = "",
    drift: dict[str, Any] | None = None,
    performance: dict[str, Any] | None = None,
    new_labelled_rows: int = 0,
    champion_age_days: float | None = None,
) -> RetrainDecision:
    """Decide whether to retrain.

    Args:
        spec: ``MonitoringSpec``.
        has_champion: Whether a champion is registered (nothing to judge otherwise).
        window_rows: Rows the champion logged in the window.
        quality_usable: Whether the live inputs passed the quality checks.
        quality_detail: What failed, for the report.
        drift: The drift stage's summary (``available``, ``features``, ``predictions``).
        performance: The performance stage's summary (``available``, ``drop``...).
        new_labelled_rows: Labelled rows logged for the champion in the window.
        champion_age_days: Days since the champion was registered.
    """
    decision = RetrainDecision(retrain=False)
    if not has_champion:
        decision.blockers.append("no champion is registered: train one first (autokfp run CONFIG)")
        return decision
    data_ok = True
    if window_rows == 0:
        decision.blockers.append("the window is empty: the champion logged no predictions in it")
        data_ok = False
    elif window_rows < spec.min_window_rows:
        decision.blockers.append(
            f"the window holds {window_rows} rows, fewer than "
            f"monitoring.min_window_rows ({spec.min_window_rows})"
        )
        data_ok = False
    if window_rows and not quality_usable:
        decision.blockers.append(
            f"the live inputs fail the quality checks ({quality_detail}); "
            "their drift and labels are not a reason to retrain"
        )
        data_ok = False

    drift = drift or {}
    features = drift.get("features") or {}
    if not drift.get("available"):
        decision.checks.append(
            TriggerCheck(
                "drift",
                False,
                False,
                None,
                spec.drift_share,
                drift.get("reason") or "drift was not measured",
            )
        )
    else:
        share = float(features.get("share_of_drifted_columns", 0.0))
        drifted = features.get("drifted_columns", [])
        fired = data_ok and share >= spec.drift_share
        detail = (
            f"{len(drifted)} of {features.get('number_of_columns', 0)} features drifted "
            f"(share {share:.2f}, threshold {spec.drift_share:.2f})"
            + (f": {', '.join(drifted)}" if drifted else "")
        )
        decision.checks.append(
            TriggerCheck("drift", data_ok, fired, share, spec.drift_share, detail)
        )
        predictions = drift.get("predictions") or {}
        moved = predictions.get("drifted_columns", [])
        if predictions:
            fired = data_ok and spec.prediction_drift_triggers and bool(moved)
            decision.checks.append(
                TriggerCheck(
                    "prediction_drift",
                    data_ok and spec.prediction_drift_triggers,
                    fired,
                    float(bool(moved)),
                    None,
                    (
                        f"the prediction distribution drifted ({', '.join(moved)})"
                        if moved
                        else "the prediction distribution is stable"
                    )
                    + (
                        ""
                        if spec.prediction_drift_triggers
                        else " (not a trigger: monitoring.prediction_drift_triggers is false)"
                    ),
                )
            )

    performance = performance or {}
    if not performance.get("available"):
        decision.checks.append(
            TriggerCheck(
                "performance",
                False,
                False,
                None,
                spec.performance_drop,
                performance.get("reason") or "performance was not measured",
            )
        )
    else:
        drop = float(performance["drop"])
        metric = performance["metric"]
        fired = data_ok and drop >= spec.performance_drop
        detail = (
            f"live {metric} {performance['live']:.4f} on {performance['labelled_rows']} "
            "labelled rows "
            f"vs {performance['champion_test']:.4f} at test time: "
            f"{'worse' if drop > 0 else 'not worse'} by {abs(drop):.1%} "
            f"(threshold {spec.performance_drop:.1%})"
        )
        decision.checks.append(
            TriggerCheck("performance", data_ok, fired, drop, spec.performance_drop, detail)
        )

    if spec.min_new_rows is not None:
        fired = data_ok and new_labelled_rows >= spec.min_new_rows
        decision.checks.append(
            TriggerCheck(
                "new_data",
                data_ok,
                fired,
                float(new_labelled_rows),
                float(spec.min_new_rows),
                f"{new_labelled_rows} labelled rows arrived for the champion "
                f"(threshold {spec.min_new_rows})",
            )
        )

    if spec.retrain_every_days is not None and champion_age_days is not None:
        fired = champion_age_days >= spec.retrain_every_days
        decision.checks.append(
            TriggerCheck(
                "schedule",
                True,
                fired,
                champion_age_days,
                spec.retrain_every_days,
                f"the champion is {champion_age_days:.1f} days old "
                f"(retrain every {spec.retrain_every_days:g})",
            )
        )

    decision.reasons = [c.detail for c in decision.checks if c.fired]
    decision.retrain = bool(decision.reasons)
    return decision
