"""Schema evolution: added, removed, renamed and type-changed columns, and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autokfp.catalog.evolution import SchemaChange, compare_schemas
from autokfp.catalog.profiling import profile_frame


def _frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "customer_id": np.arange(rows),
        "plan": rng.choice(["basic", "pro", "team"], rows),
        "monthly_spend": rng.normal(50, 10, rows).round(2),
        "tickets": rng.integers(0, 5, rows),
        "signed_up": pd.date_range("2024-01-01", periods=rows, freq="D"),
    })


def _schema(frame: pd.DataFrame):
    return profile_frame(frame, "wh/customers", "sqlite", "sqlite:///wh.db")


def test_same_schema_is_unchanged() -> None:
    change = compare_schemas(_schema(_frame()), _schema(_frame().sample(frac=1, random_state=1)))
    assert change.verdict == "unchanged" and change.reasons() == []


def test_added_column_is_compatible() -> None:
    change = compare_schemas(_schema(_frame()), _schema(_frame().assign(region="north")))
    assert change.verdict == "compatible"
    assert change.added == ["region"] and change.breaking_columns == []
    assert change.reasons() == ["'region' was added"]


def test_removed_and_retyped_columns_are_breaking_and_named() -> None:
    new = _frame().drop(columns=["tickets"])
    new["monthly_spend"] = new["monthly_spend"].map(lambda v: f"${v}")
    change = compare_schemas(_schema(_frame()), _schema(new))
    assert change.verdict == "breaking"
    assert change.removed == ["tickets"]
    assert change.breaking_columns == ["monthly_spend", "tickets"]
    (retyped,) = change.type_changed
    assert (retyped.column, retyped.old_type, retyped.new_type) == (
        "monthly_spend", "float64", "string")
    assert any(r.startswith("BREAKING: 'monthly_spend' changed type float64 -> string")
               for r in change.reasons())
    assert "'tickets' was removed" in change.summary()


def test_int_to_float_is_a_compatible_type_change() -> None:
    new = _frame()
    new["tickets"] = new["tickets"].astype(float)
    new.loc[3, "tickets"] = np.nan
    change = compare_schemas(_schema(_frame()), _schema(new))
    assert change.verdict == "compatible"
    (retyped,) = change.type_changed
    assert retyped.column == "tickets" and not retyped.breaking
    assert "still number" in retyped.describe()


def test_likely_rename_is_detected_and_breaking_for_a_used_column() -> None:
    new = _frame().rename(columns={"monthly_spend": "monthly_spend_eur"})
    change = compare_schemas(_schema(_frame()), _schema(new))
    (rename,) = change.renamed
    assert (rename.old, rename.new) == ("monthly_spend", "monthly_spend_eur")
    assert change.added == [] and change.removed == []
    assert change.verdict == "breaking" and change.breaking_columns == ["monthly_spend"]

    # a renamed column with a different profile and name is not taken for a rename
    unrelated = _frame().drop(columns=["plan"]).assign(score=np.linspace(0, 1, 200))
    change = compare_schemas(_schema(_frame()), _schema(unrelated))
    assert change.renamed == [] and change.removed == ["plan"] and change.added == ["score"]


def test_changes_to_unused_columns_are_compatible() -> None:
    new = _frame().drop(columns=["tickets"])
    new["plan"] = new["plan"].map(len)  # text -> number
    change = compare_schemas(_schema(_frame()), _schema(new),
                             used_columns={"customer_id", "monthly_spend"})
    assert change.verdict == "compatible" and change.breaking_columns == []
    change = compare_schemas(_schema(_frame()), _schema(new), used_columns={"plan"})
    assert change.verdict == "breaking" and change.breaking_columns == ["plan"]


def test_change_round_trips_through_json() -> None:
    new = _frame().rename(columns={"monthly_spend": "spend"}).drop(columns=["tickets"])
    change = compare_schemas(_schema(_frame()), _schema(new))
    again = SchemaChange.from_dict(change.to_dict())
    assert again == change
    assert change.to_dict()["reasons"] == change.reasons()
