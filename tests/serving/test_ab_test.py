"""The A/B outcome test (``autokfp.serving.ab_test``): its intervals against published and
independent figures, its coverage, and its decision rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from autokfp.serving import ab_test
from autokfp.serving.ab_test import Arm, compare_arms, newcombe_interval, welch_interval


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, example (a): 56/70 - 48/80,
    # method 10: 0.0524 to 0.3339
    low, high = newcombe_interval(56, 70, 48, 80, 0.95)
    assert low == pytest.approx(0.0524, abs=5e-5) and high == pytest.approx(0.3339, abs=5e-5)


def test_welch_interval_matches_scipy():
    rng = np.random.default_rng(4)
    new, old = rng.normal(1.2, 2.0, 80), rng.normal(1.0, 0.5, 120)
    low, high = welch_interval(new, old, 0.9)
    expected = stats.ttest_ind(new, old, equal_var=False).confidence_interval(0.9)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-9)


def test_newcombe_interval_keeps_its_coverage_on_small_arms():
    """Two arms of 60 with the same accuracy 0.85: the 95 % interval must hold 0 in at least
    93 % of 3,000 simulated splits (the Wald interval drops below that at these sizes)."""
    rng = np.random.default_rng(7)
    n, p, held = 60, 0.85, 0
    for _ in range(3000):
        a, b = rng.binomial(n, p), rng.binomial(n, p)
        low, high = newcombe_interval(a, n, b, n, 0.95)
        held += low <= 0 <= high
    assert held / 3000 >= 0.93, held / 3000


def _arm(version: str, outcomes: list[float]) -> Arm:
    return Arm(version, len(outcomes), float(np.mean(outcomes)) if outcomes else None,
               list(outcomes))


def _accuracy(rate: float, n: int, seed: int) -> list[float]:
    right = int(round(rate * n))
    values = [1.0] * right + [0.0] * (n - right)
    np.random.default_rng(seed).shuffle(values)
    return values


@pytest.mark.parametrize("inconclusive", ["promote", "rollback"])
def test_the_decision_rule(inconclusive):
    old = _arm("1", _accuracy(0.80, 400, 1))
    # a sure loss: rolled back whatever ab_inconclusive says
    worse = compare_arms("accuracy", old, _arm("2", _accuracy(0.70, 400, 2)), 0.95, 0.02, 100,
                         inconclusive)
    assert worse.verdict == "worse" and not worse.promote
    assert worse.interval[1] < 0 and "the whole interval is a loss" in worse.detail
    # 4,000 rows an arm at the same accuracy: the interval is narrower than the margin
    big_old = _arm("1", _accuracy(0.80, 4000, 3))
    same = compare_arms("accuracy", big_old, _arm("2", _accuracy(0.80, 4000, 4)), 0.95, 0.02,
                        100, inconclusive)
    assert same.verdict == "not worse" and same.promote, same.detail
    # 150 rows an arm, a small dip: no sure loss, but the interval reaches past the margin
    dip = compare_arms("accuracy", _arm("1", _accuracy(0.80, 150, 5)),
                       _arm("2", _accuracy(0.78, 150, 6)), 0.95, 0.02, 100, inconclusive)
    assert dip.verdict == "inconclusive" and dip.promote == (inconclusive == "promote")
    assert f"deploy.ab_inconclusive is {inconclusive}" in dip.detail
    # too few labelled rows: no test at all, and the detail says so
    few = compare_arms("accuracy", _arm("1", _accuracy(0.8, 40, 7)),
                       _arm("2", _accuracy(0.2, 40, 8)), 0.95, 0.02, 100, inconclusive)
    assert few.verdict == "inconclusive" and few.interval is None
    assert "fewer than deploy.ab_min_rows (100)" in few.detail


def test_a_regression_is_judged_on_its_absolute_error_with_a_relative_margin():
    rng = np.random.default_rng(9)
    old = _arm("1", list(np.abs(rng.normal(0, 1.0, 500))))
    larger = compare_arms("mean_absolute_error", old, _arm("2", list(np.abs(rng.normal(0, 1.5, 500)))),
                          0.95, 0.05, 100, "promote")
    assert larger.verdict == "worse" and not larger.promote  # a larger error is a loss
    smaller = compare_arms("mean_absolute_error", old, _arm("2", list(np.abs(rng.normal(0, 0.7, 500)))),
                           0.95, 0.05, 100, "rollback")
    assert smaller.verdict == "not worse" and smaller.promote
    assert smaller.margin == pytest.approx(0.05 * old.value)


def test_arm_outcomes_read_logged_answers_and_labels():
    rows = pd.DataFrame({"output_prediction": [1, 0, "1", 0, 1],
                         "output_probability_1": [0.9, 0.2, 0.7, 0.4, 0.6],
                         ab_test.LABEL_COLUMN: [1, 1, 1.0, None, "0"]})
    metric, arm = ab_test.build_arm("3", rows, ab_test.LABEL_COLUMN)
    assert metric == "accuracy" and arm.rows == 4  # the unlabelled row is left out
    assert arm.outcomes == [1.0, 0.0, 1.0, 0.0] and arm.value == 0.5
    regression = pd.DataFrame({"output_prediction": [1.5, 2.0], ab_test.LABEL_COLUMN: [1.0, 3.0]})
    metric, arm = ab_test.build_arm("3", regression, ab_test.LABEL_COLUMN)
    assert metric == "mean_absolute_error" and arm.outcomes == [0.5, 1.0]
    metric, arm = ab_test.build_arm("3", pd.DataFrame(), ab_test.LABEL_COLUMN)
    assert arm.rows == 0 and arm.value is None


def test_a_customer_who_asks_again_is_one_unit_of_the_test_not_many():
    """The same model in both arms, customers coming back several times during the split
    (one customer gets the same answer each time): counted per answer, the repeats act as
    independent evidence and the interval shrinks until chance differences between the arms'
    customers look significant. Per id, the interval is the one of the customers themselves:
    as wide as with one answer each, whatever the repeats."""
    rng = np.random.default_rng(5)
    right = rng.random(600) < 0.83  # does the model get customer i right
    ids = np.arange(600)
    old_ids, new_ids = ids[:300], ids[300:]

    def logged(customers, repeats):
        chosen = np.repeat(customers, repeats)
        return pd.DataFrame({"customer_id": chosen,
                             "output_prediction": np.where(right[chosen], 1, 0),
                             "output_probability_1": 0.5,
                             ab_test.LABEL_COLUMN: 1})

    once = {v: ab_test.build_arm(v, logged(c, 1), ab_test.LABEL_COLUMN, "customer_id")[1]
            for v, c in (("1", old_ids), ("2", new_ids))}
    often = {v: ab_test.build_arm(v, logged(c, 6), ab_test.LABEL_COLUMN, "customer_id")[1]
             for v, c in (("1", old_ids), ("2", new_ids))}
    assert often["1"].rows == 300 and often["1"].answers == 1800
    assert often["1"].value == pytest.approx(once["1"].value)
    per_id = compare_arms("accuracy", often["1"], often["2"], 0.95, 0.02, 100, "promote")
    alone = compare_arms("accuracy", once["1"], once["2"], 0.95, 0.02, 100, "promote")
    assert per_id.interval == pytest.approx(alone.interval)
    assert "300 labelled ids (1800 answers)" in per_id.detail
    # counted per answer (no id column), the same evidence gives an interval sqrt(6) narrower
    naive = {v: ab_test.build_arm(v, logged(c, 6), ab_test.LABEL_COLUMN)[1]
             for v, c in (("1", old_ids), ("2", new_ids))}
    narrow = compare_arms("accuracy", naive["1"], naive["2"], 0.95, 0.02, 100, "promote")
    width = lambda outcome: outcome.interval[1] - outcome.interval[0]  # noqa: E731
    assert width(narrow) < 0.5 * width(per_id)
    # an id answered both right and wrong (its features changed) counts as its share right
    mixed = pd.DataFrame({"customer_id": ["a", "a", "b"], "output_prediction": [1, 0, 1],
                          "output_probability_1": 0.5, ab_test.LABEL_COLUMN: [1, 1, 1]})
    _, arm = ab_test.build_arm("1", mixed, ab_test.LABEL_COLUMN, "customer_id")
    assert arm.outcomes == [0.5, 1.0] and arm.rows == 2 and arm.answers == 3


def test_logged_rows_without_the_id_column_count_per_answer_and_say_so(caplog):
    rows = pd.DataFrame({"output_prediction": [1, 1], "output_probability_1": 0.5,
                         ab_test.LABEL_COLUMN: [1, 0]})
    with caplog.at_level("WARNING", logger="autokfp.serving.ab_test"):
        _, arm = ab_test.build_arm("1", rows, ab_test.LABEL_COLUMN, "customer_id")
    assert arm.rows == 2 and arm.answers == 2
    assert "no id column 'customer_id'" in caplog.text and "send the id column" in caplog.text
