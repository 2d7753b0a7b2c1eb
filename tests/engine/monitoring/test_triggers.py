"""The retraining decision: each trigger, and no retraining on garbage."""

from __future__ import annotations

from autokfp.config import MonitoringSpec
from autokfp.monitoring.triggers import decide

DRIFTED = {
    "available": True,
    "features": {
        "share_of_drifted_columns": 0.5,
        "number_of_columns": 4,
        "drifted_columns": ["monthly_charges", "contract_type"],
    },
    "predictions": {"drifted_columns": ["output_probability_1"]},
}
STABLE = {
    "available": True,
    "features": {"share_of_drifted_columns": 0.0, "number_of_columns": 4, "drifted_columns": []},
    "predictions": {"drifted_columns": []},
}
WORSE = {
    "available": True,
    "metric": "auc",
    "live": 0.70,
    "champion_test": 0.84,
    "drop": (0.84 - 0.70) / 0.84,
    "labelled_rows": 900,
}


def _decide(spec=None, **kwargs):
    args = {"has_champion": True, "window_rows": 5000, "quality_usable": True}
    args.update(kwargs)
    return decide(spec or MonitoringSpec(), **args)


def _check(decision, trigger):
    return next(c for c in decision.checks if c.trigger == trigger)


def test_drift_above_the_share_triggers_with_the_columns_named():
    decision = _decide(drift=DRIFTED)
    assert decision.retrain
    assert "monthly_charges, contract_type" in decision.reasons[0]
    assert decision.summary.startswith("retrain: 2 of 4 features drifted")


def test_a_performance_drop_triggers_even_without_drift():
    decision = _decide(drift=STABLE, performance=WORSE)
    assert decision.retrain and _check(decision, "performance").fired
    assert not _check(decision, "drift").fired
    assert "worse by 16.7%" in decision.reasons[0]


def test_a_small_drop_or_stable_inputs_do_not():
    small = dict(WORSE, live=0.83, drop=0.01 / 0.84)
    decision = _decide(drift=STABLE, performance=small)
    assert not decision.retrain
    assert "no retraining" in decision.summary


def test_enough_new_labelled_rows_trigger():
    spec = MonitoringSpec(min_new_rows=1000)
    assert _decide(spec, drift=STABLE, new_labelled_rows=1200).retrain
    assert not _decide(spec, drift=STABLE, new_labelled_rows=999).retrain
    assert not _decide(
        MonitoringSpec(min_new_rows=None), drift=STABLE, new_labelled_rows=10**6
    ).retrain


def test_the_schedule_triggers_whatever_the_traffic():
    spec = MonitoringSpec(retrain_every_days=30)
    decision = _decide(spec, window_rows=0, quality_usable=False, champion_age_days=31)
    assert decision.retrain and _check(decision, "schedule").fired
    assert not _decide(spec, drift=STABLE, champion_age_days=3).retrain


def test_prediction_drift_alone_is_reported_and_triggers_only_when_asked():
    only_predictions = dict(STABLE, predictions={"drifted_columns": ["output_prediction"]})
    decision = _decide(drift=only_predictions)
    assert not decision.retrain
    assert "not a trigger" in _check(decision, "prediction_drift").detail
    assert _decide(MonitoringSpec(prediction_drift_triggers=True), drift=only_predictions).retrain


def test_garbage_never_retrains():
    empty = _decide(
        window_rows=0, quality_usable=False, drift={"available": False, "reason": "empty"}
    )
    assert not empty.retrain and "window is empty" in empty.summary
    few = _decide(window_rows=20, drift=DRIFTED, performance=WORSE)
    assert not few.retrain and "fewer than monitoring.min_window_rows" in few.summary
    assert not _check(few, "drift").evaluated
    bad = _decide(
        quality_usable=False,
        quality_detail="column(s) ['age'] absent",
        drift=DRIFTED,
        performance=WORSE,
        new_labelled_rows=10**6,
    )
    assert not bad.retrain and "fail the quality checks (column(s) ['age'] absent)" in bad.summary


def test_no_champion_no_decision():
    decision = _decide(has_champion=False)
    assert not decision.retrain and decision.blockers == [
        "no champion is registered: train one first (autokfp run CONFIG)"
    ]
    assert decision.to_dict()["retrain"] is False
