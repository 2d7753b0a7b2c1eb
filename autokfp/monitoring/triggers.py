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

Each trigger is a class satisfying ``Trigger``; ``TRIGGERS`` lists them in report order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


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


@dataclass
class Evidence:
    """What a monitoring run measured, for the triggers to judge."""

    window_rows: int = 0  # rows the champion logged in the window
    quality_usable: bool = False  # the live inputs passed the quality checks
    quality_detail: str = ""  # what failed, for the report
    drift: dict[str, Any] = field(default_factory=dict)  # the drift step's summary
    performance: dict[str, Any] = field(default_factory=dict)  # the performance step's summary
    new_labelled_rows: int = 0  # labelled rows logged for the champion in the window
    champion_age_days: float | None = None  # days since the champion was registered


class Trigger(Protocol):
    """One reason to retrain: judged on the evidence, or reported as not judged."""

    name: str

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck | None:
        """The check (None: the trigger does not apply here at all). ``data_ok`` is False
        when the window is not worth judging; a data-driven trigger must not fire then."""
        ...


class DriftTrigger:
    """The share of drifted input features reaches ``monitoring.drift_share``."""

    name = "drift"

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck:
        drift = evidence.drift
        if not drift.get("available"):
            return TriggerCheck(self.name, False, False, None, spec.drift_share,
                                drift.get("reason") or "drift was not measured")
        features = drift.get("features") or {}
        share = float(features.get("share_of_drifted_columns", 0.0))
        drifted = features.get("drifted_columns", [])
        detail = (
            f"{len(drifted)} of {features.get('number_of_columns', 0)} features drifted "
            f"(share {share:.2f}, threshold {spec.drift_share:.2f})"
            + (f": {', '.join(drifted)}" if drifted else "")
        )
        return TriggerCheck(self.name, data_ok, data_ok and share >= spec.drift_share, share,
                            spec.drift_share, detail)


class PredictionDriftTrigger:
    """The predictions drifted (a trigger only with ``monitoring.prediction_drift_triggers``;
    reported whenever drift measured the predictions)."""

    name = "prediction_drift"

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck | None:
        predictions = (evidence.drift.get("predictions") or {}) if evidence.drift.get(
            "available") else {}
        if not predictions:
            return None
        moved = predictions.get("drifted_columns", [])
        enabled = spec.prediction_drift_triggers
        detail = (
            f"the prediction distribution drifted ({', '.join(moved)})" if moved
            else "the prediction distribution is stable"
        ) + ("" if enabled else " (not a trigger: monitoring.prediction_drift_triggers is false)")
        return TriggerCheck(self.name, data_ok and enabled, data_ok and enabled and bool(moved),
                            float(bool(moved)), None, detail)


class PerformanceTrigger:
    """The live primary metric is worse than at test time by ``monitoring.performance_drop``."""

    name = "performance"

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck:
        performance = evidence.performance
        if not performance.get("available"):
            return TriggerCheck(self.name, False, False, None, spec.performance_drop,
                                performance.get("reason") or "performance was not measured")
        drop = float(performance["drop"])
        detail = (
            f"live {performance['metric']} {performance['live']:.4f} on "
            f"{performance['labelled_rows']} labelled rows "
            f"vs {performance['champion_test']:.4f} at test time: "
            f"{'worse' if drop > 0 else 'not worse'} by {abs(drop):.1%} "
            f"(threshold {spec.performance_drop:.1%})"
        )
        return TriggerCheck(self.name, data_ok, data_ok and drop >= spec.performance_drop, drop,
                            spec.performance_drop, detail)


class NewDataTrigger:
    """``monitoring.min_new_rows`` labelled rows arrived for the champion (when set)."""

    name = "new_data"

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck | None:
        if spec.min_new_rows is None:
            return None
        rows = evidence.new_labelled_rows
        return TriggerCheck(self.name, data_ok, data_ok and rows >= spec.min_new_rows,
                            float(rows), float(spec.min_new_rows),
                            f"{rows} labelled rows arrived for the champion "
                            f"(threshold {spec.min_new_rows})")


class ScheduleTrigger:
    """The champion is older than ``monitoring.retrain_every_days`` (needs no live data)."""

    name = "schedule"

    def check(self, spec: Any, evidence: Evidence, data_ok: bool) -> TriggerCheck | None:
        age = evidence.champion_age_days
        if spec.retrain_every_days is None or age is None:
            return None
        return TriggerCheck(self.name, True, age >= spec.retrain_every_days, age,
                            spec.retrain_every_days,
                            f"the champion is {age:.1f} days old "
                            f"(retrain every {spec.retrain_every_days:g})")


# In report order. A new trigger is one class above and an entry here.
TRIGGERS: list[Trigger] = [DriftTrigger(), PredictionDriftTrigger(), PerformanceTrigger(),
                           NewDataTrigger(), ScheduleTrigger()]


def blockers(spec: Any, evidence: Evidence) -> list[str]:
    """Why the window is not worth judging (empty: the data-driven triggers may fire)."""
    found = []
    rows = evidence.window_rows
    if rows == 0:
        found.append("the window is empty: the champion logged no predictions in it")
    elif rows < spec.min_window_rows:
        found.append(f"the window holds {rows} rows, fewer than "
                     f"monitoring.min_window_rows ({spec.min_window_rows})")
    if rows and not evidence.quality_usable:
        found.append(f"the live inputs fail the quality checks ({evidence.quality_detail}); "
                     "their drift and labels are not a reason to retrain")
    return found


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
    triggers: list[Trigger] | None = None,
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
        triggers: The triggers to apply, in report order (default ``TRIGGERS``).
    """
    decision = RetrainDecision(retrain=False)
    if not has_champion:
        decision.blockers.append("no champion is registered: train one first (autokfp run CONFIG)")
        return decision
    evidence = Evidence(window_rows, quality_usable, quality_detail, drift or {},
                        performance or {}, new_labelled_rows, champion_age_days)
    decision.blockers = blockers(spec, evidence)
    for trigger in TRIGGERS if triggers is None else triggers:
        check = trigger.check(spec, evidence, data_ok=not decision.blockers)
        if check is not None:
            decision.checks.append(check)
    decision.reasons = [c.detail for c in decision.checks if c.fired]
    decision.retrain = bool(decision.reasons)
    return decision
