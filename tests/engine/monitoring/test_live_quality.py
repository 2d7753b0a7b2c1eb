"""Checks of the live inputs: absent columns and empty rows make a window unusable."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autokfp.monitoring.quality import check_inputs

KINDS = {"age": "numerical", "plan": "categorical"}


def _reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"age": rng.integers(18, 80, 500).astype(float), "plan": rng.choice(["basic", "pro"], 500)}
    )


def _statuses(result) -> dict[str, str]:
    return {c.check: c.status for c in result.checks}


def test_clean_inputs_pass():
    live = _reference().sample(200, random_state=1).assign(request_id=[f"r{i}" for i in range(200)])
    result = check_inputs(live, ["age", "plan"], KINDS, _reference())
    assert result.usable and result.bad_rows == 0
    assert set(_statuses(result).values()) == {"pass"}


def test_an_absent_column_makes_every_row_bad():
    live = _reference().drop(columns=["plan"])
    result = check_inputs(live, ["age", "plan"], KINDS, _reference())
    assert not result.usable and result.bad_fraction == 1.0
    assert _statuses(result)["required_columns"] == "fail"


def test_empty_rows_and_shifted_values_are_reported():
    live = _reference().head(100).copy()
    live.loc[:29, ["age", "plan"]] = np.nan  # 30% of rows carry nothing
    live.loc[30:49, "age"] = 200.0
    live.loc[50:59, "plan"] = "enterprise"
    result = check_inputs(live, ["age", "plan"], KINDS, _reference(), max_bad_fraction=0.2)
    statuses = _statuses(result)
    assert not result.usable and result.bad_rows == 30
    assert statuses["empty_rows"] == "fail"
    assert statuses["missing_values"] == "warn"
    assert statuses["out_of_range"] == "warn" and statuses["unseen_categories"] == "warn"
    assert "enterprise" in next(c.detail for c in result.checks if c.check == "unseen_categories")


def test_an_empty_window_is_not_usable():
    result = check_inputs(pd.DataFrame(), ["age"], KINDS, None)
    assert not result.usable and result.to_dict()["checks"][0]["status"] == "fail"
