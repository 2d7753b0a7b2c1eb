"""The serving fast path (plain dicts, no pandas) must answer exactly as the frame path.

A request of up to 64 rows is validated by ``InputValidator.check_records``, engineered by
``apply_features_records`` and scored by ``AutokfpModel.predict_records``; a bigger one goes
through ``check``, ``apply_features`` and ``predict``. A user must not be able to tell which
path answered: same features, same probabilities, same rejections. Also: the prediction
logger never fails a request, drops (and counts) rows when its queue is full, and writes to
GCS as well as to local folders.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autokfp import storage
from autokfp.modeling.features import FeaturePlan, apply_features, apply_features_records
from autokfp.serving.prediction_log import PredictionLogger, read_prediction_log
from autokfp.serving.predictor import InputValidator, RequestError, load_package

EXAMPLE_ROWS = 300


@pytest.fixture(scope="module")
def model(trained_package) -> Any:
    return load_package(trained_package.paths.model)


@pytest.fixture(scope="module")
def plan(model) -> FeaturePlan:
    return model.plan


@pytest.fixture(scope="module")
def rows(trained_package, plan) -> list[dict[str, Any]]:
    """300 example rows as a JSON request carries them: numbers, null, ISO date strings."""
    frame = pd.concat([pd.read_parquet(trained_package.paths.test),
                       pd.read_parquet(trained_package.paths.train)], ignore_index=True)
    return [_json_value_row(r) for r in frame.head(EXAMPLE_ROWS).to_dict(orient="records")]


def _json_value_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            value = None
        elif isinstance(value, pd.Timestamp):
            value = value.isoformat()
        out[key] = value
    return out


def _columns(plan: FeaturePlan) -> tuple[str, str, str]:
    return plan.numeric[0], plan.categorical[0], plan.datetime[0]


def _edge_rows(plan: FeaturePlan, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per awkward value a client may send, each in an otherwise normal row."""
    number, category, date = _columns(plan)
    aware = datetime(2021, 3, 4, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    values = {
        number: [None, float("nan"), "3.5", " 7 ", "1e3", "-0", "inf", 2, np.int64(3),
                 np.float32(1.25), 10**20, "abc", "nan", "1_000", "", True],
        category: [2, 2.0, "2", np.float64(2.0), True, "never-seen-level", "", None, float("nan"),
                   plan.categorical_levels[category][0]],
        date: ["2020-07-11", "2020-07-11T05:00:00+02:00", "2020-07-11T03:00:00Z",
               "2020-07-11 05:00", "2020-07-11T00:00:00.123456789", pd.Timestamp("2019-01-02"),
               pd.Timestamp("2019-01-02 03:04", tz="Europe/Paris"), aware, datetime(2018, 5, 6),
               "garbage", "", "2024-13-45", "9999-12-31", "1500-01-01", None, 0, 1594425600],
    }
    edges = []
    for column, options in values.items():
        for value in options:
            edges.append({**base, column: value})
    return edges


def _normalized(values: list[Any]) -> list[Any]:
    """None for every spelling of missing, so the two paths compare cell by cell."""
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def assert_same_features(records: list[dict[str, Any]], plan: FeaturePlan) -> None:
    by_frame = apply_features(pd.DataFrame.from_records(records), plan)
    by_rows = pd.DataFrame(apply_features_records(records, plan), columns=plan.feature_columns)
    assert list(by_frame.columns) == list(by_rows.columns)
    for column in plan.feature_columns:
        frame_values = _normalized(by_frame[column].tolist())
        row_values = _normalized(by_rows[column].tolist())
        differ = [(records[i], a, b) for i, (a, b) in enumerate(zip(frame_values, row_values))
                  if a != b or type(a) is not type(b)]
        assert not differ, f"feature {column}: frame path vs row path differ on {differ[:3]}"


# ------------------------------------------------------------------------------ features


def test_row_path_engineers_the_same_features_as_the_frame_path(rows, plan) -> None:
    assert_same_features(rows, plan)
    assert_same_features(rows[:1], plan)


def test_awkward_values_give_the_same_features_on_both_paths(rows, plan) -> None:
    edges = _edge_rows(plan, rows[0])
    assert_same_features(edges, plan)  # mixed types in one column (an object column)
    for edge in edges:  # and each alone (the column keeps the value's own type)
        assert_same_features([edge], plan)


def test_a_category_sent_as_2_or_2_0_or_text_is_the_same_category(rows, plan) -> None:
    _, category, _ = _columns(plan)
    records = [{**rows[0], category: value} for value in (2, 2.0, "2", np.float64(2.0))]
    features = apply_features_records(records, plan)
    assert {f[category] for f in features} == {features[0][category]}
    assert_same_features(records, plan)


def test_text_columns_agree_including_empty_and_missing_text(rows, plan) -> None:
    text_column = "support_notes"
    text_plan = dataclasses.replace(
        plan, categorical=[c for c in plan.categorical if c != text_column], text=[text_column],
        text_vocabulary={text_column: ["outages", "price", "cheaper", "router"]})
    records = rows[:50] + [{**rows[0], text_column: value} for value in
                           ("", "   ", None, "OUTAGES again, price UP", "router\trouter", 42)]
    assert_same_features(records, text_plan)
    # apply_features measures each distinct text once: repeated texts, in another order and
    # spelt in other cases, still get their own row's figures
    repeated = records[::-1] + [{**rows[1], text_column: value} for value in
                                ("outages again, PRICE up", "Router", 42, None, "42")] + records
    assert_same_features(repeated, text_plan)


def test_dates_with_and_without_time_zone_mean_the_same_instant(rows, plan) -> None:
    _, _, date = _columns(plan)
    same_instant = ["2020-07-11T03:00:00Z", "2020-07-11T05:00:00+02:00", "2020-07-11 03:00:00",
                    pd.Timestamp("2020-07-10 23:00", tz="US/Eastern")]
    features = apply_features_records([{**rows[0], date: v} for v in same_instant], plan)
    parts = [{k: v for k, v in f.items() if k.startswith(f"{date}__")} for f in features]
    assert all(p == parts[0] for p in parts), parts


# ------------------------------------------------------------------------------ scoring


def test_predict_records_equals_predict_exactly(model, rows, plan) -> None:
    awkward = [r for r in _edge_rows(plan, rows[0])]
    for records in (rows, rows[:1], rows[:64], awkward):
        fast = model.predict_records(records)
        full = model.predict(None, pd.DataFrame.from_records(records))
        pd.testing.assert_frame_equal(fast, full, check_exact=True)


def _meta_variants(model, plan) -> dict[str, dict[str, Any]]:
    """The package's own meta, and the same with each post-processing step the answer path
    must reproduce: a Platt calibration, a per-group score repair and per-group thresholds."""
    category = plan.categorical[0]
    levels = plan.categorical_levels[category][:2]
    quantiles = list(np.linspace(0.0, 1.0, 11) ** 1.5)
    mitigation = {"column": category,
                  "score_repair": {"reference": list(np.linspace(0.0, 1.0, 11)), "strength": 0.6,
                                   "groups": {levels[0]: quantiles}},
                  "thresholds": {levels[1]: 0.35}}
    calibration = {"applied": True, "method": "platt", "parameters": {"a": 1.3, "b": -0.2}}
    return {"as packaged": model.meta,
            "calibrated": {**model.meta, "calibration": calibration},
            "mitigated": {**model.meta, "fairness_mitigation": mitigation},
            "both": {**model.meta, "calibration": calibration, "fairness_mitigation": mitigation}}


@pytest.mark.parametrize("variant", ["as packaged", "calibrated", "mitigated", "both"])
def test_the_answers_of_the_fast_path_equal_the_offline_frame_exactly(model, rows, plan,
                                                                      variant) -> None:
    """What the server sends for a small request (``predict_answers``: no pandas) is the
    offline prediction frame, value for value, as JSON would carry it."""
    import copy

    scored = copy.copy(model)
    scored.meta = _meta_variants(model, plan)[variant]
    awkward = [r for r in _edge_rows(plan, rows[0])]
    moved = False
    for records in (rows[:1], rows[:64], awkward):
        answers = scored.predict_answers(records)
        offline = scored.predict(None, pd.DataFrame.from_records(records))
        expected = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in ((k, v.item() if isinstance(v, np.generic) else v)
                                  for k, v in row.items())}
                    for row in offline.to_dict(orient="records")]
        assert answers == expected
        assert all(type(a["prediction"]) is type(e["prediction"]) for a, e in zip(answers, expected))
        # the server's way: the validator parses the dates once and hands them over
        accepted = [i for i, r in enumerate(records) if _verdict(
            lambda r=r: InputValidator(plan).check_records([dict(r)])) == "accepted"]
        checked, stamps = InputValidator(plan).check_records([dict(records[i]) for i in accepted])
        assert stamps is not None and len(stamps) == len(accepted) > 0
        assert scored.predict_answers(checked, stamps=stamps) == [expected[i] for i in accepted]
        plain = model.predict(None, pd.DataFrame.from_records(records))
        moved |= not np.allclose(offline.iloc[:, 1:].to_numpy(float), plain.iloc[:, 1:].to_numpy(float))
    assert moved == (variant != "as packaged"), "the variant must change some probabilities"


# ------------------------------------------------------------------------------ validation


def _mutations(plan: FeaturePlan) -> dict[str, Any]:
    number, category, date = _columns(plan)

    def without(column):
        return lambda row: {k: v for k, v in row.items() if k != column}

    def setting(column, value):
        return lambda row: {**row, column: value}

    return {
        "missing number column": without(number),
        "missing date column": without(date),
        "unknown column": setting("not_a_column", 1),
        "text in a number column": setting(number, "abc"),
        "empty string as a number": setting(number, ""),
        "'nan' as a number": setting(number, "nan"),
        "underscored number": setting(number, "1_000"),
        "number too big for float": setting(number, "1e400"),
        "boolean as a number": setting(number, True),
        "list as a number": setting(number, [1, 2]),
        "object as a number": setting(number, {"value": 1}),
        "garbage date": setting(date, "not-a-date"),
        "empty date": setting(date, ""),
        "impossible date": setting(date, "2024-13-45"),
        "date out of range": setting(date, "9999-12-31"),
        "boolean as a date": setting(date, True),
        "list as a date": setting(date, ["2020-01-01"]),
        "fine": lambda row: row,
        "ignored columns present": setting(plan.target, 1),
        "number as text": setting(number, "3.5"),
        "missing number": setting(number, None),
        "NaN number": setting(number, float("nan")),
        "integer category": setting(category, 2),
        "unseen category": setting(category, "never-seen-level"),
        "aware date": setting(date, "2020-07-11T05:00:00+02:00"),
        "date object": setting(date, pd.Timestamp("2020-07-11")),
        "missing date": setting(date, None),
    }


ACCEPTED = {"fine", "ignored columns present", "number as text", "missing number", "NaN number",
            "integer category", "unseen category", "aware date", "date object", "missing date"}
MUTATIONS = ["missing number column", "missing date column", "unknown column",
             "text in a number column", "empty string as a number", "'nan' as a number",
             "underscored number", "number too big for float", "boolean as a number",
             "list as a number", "object as a number", "garbage date", "empty date",
             "impossible date", "date out of range", "boolean as a date", "list as a date",
             *sorted(ACCEPTED)]


def _verdict(call) -> str:
    try:
        call()
    except RequestError as error:
        return f"rejected: {error}"
    return "accepted"


@pytest.mark.parametrize("where", ["alone", "last of 5"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_both_validators_reject_and_accept_the_same_rows(mutation, where, rows, plan) -> None:
    validator = InputValidator(plan)
    mutate = _mutations(plan)[mutation]
    if where == "alone":
        records = [mutate(dict(rows[0]))]
    elif mutation.endswith("column"):
        # a frame cannot show a key absent from one row only (pandas fills it with NaN): the
        # server checks that before building the frame (see test_predictor_server)
        records = [mutate(dict(r)) for r in rows[:5]]
    else:
        records = [dict(r) for r in rows[1:5]] + [mutate(dict(rows[0]))]
    by_rows = _verdict(lambda: validator.check_records([dict(r) for r in records]))
    by_frame = _verdict(lambda: validator.check(pd.DataFrame.from_records(records)))
    expected = "accepted" if mutation in ACCEPTED else "rejected"
    assert by_rows.startswith(expected), by_rows
    assert by_frame.startswith(expected), by_frame
    if expected == "rejected":  # the message names the column the user must fix
        number, _, date = _columns(plan)
        named = {number, date, "not_a_column"} & set(by_rows.split("'"))
        assert named and named <= set(by_frame.split("'")), (by_rows, by_frame)


def test_both_validators_reject_an_empty_request(plan) -> None:
    validator = InputValidator(plan)
    expected = "rejected: the request has no rows"
    assert _verdict(lambda: validator.check_records([])).startswith(expected)
    assert _verdict(lambda: validator.check(pd.DataFrame())).startswith(expected)


# ------------------------------------------------------------------------------ prediction log


def _request(rows: int, start: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    inputs = pd.DataFrame({"amount": np.arange(rows) + start, "plan": ["basic"] * rows})
    outputs = pd.DataFrame({"prediction": [1] * rows, "probability_1": [0.75] * rows})
    return inputs, outputs


GARBAGE = [
    (None, None),
    ("not a frame", pd.DataFrame({"prediction": [1]})),
    (pd.DataFrame({"a": [1.0]}), None),
    (pd.DataFrame({"a": [1.0, 2.0]}), pd.DataFrame({"prediction": [1, 2, 3]})),
    (pd.DataFrame({0: [1], 1: [2]}), pd.DataFrame({"prediction": [1]})),
    (pd.DataFrame({"a": [{"nested": 1}], "b": [[1, 2]], "c": [object()]}),
     pd.DataFrame({"prediction": [1]})),
    (pd.DataFrame({"a": [b"\xff\xfe"]}), pd.DataFrame({"prediction": [1]})),
    (12, 13),
]


def test_prediction_logger_never_raises_and_still_logs_good_requests(tmp_path) -> None:
    logger = PredictionLogger(str(tmp_path), "churn", "3", flush_seconds=60)
    for inputs, outputs in GARBAGE:
        logger.log(inputs, outputs, "garbage")  # must not raise
    inputs, outputs = _request(4)
    logger.log(inputs, outputs, "good-request")
    logger.close()
    logged = read_prediction_log(str(tmp_path), "churn")
    good = logged[logged["request_id"] == "good-request"]
    assert good["amount"].astype(float).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert set(good["output_prediction"].astype(int)) == {1}
    assert set(good["model_version"]) == {"3"}
    assert logger.dropped >= 4  # the requests that could not even be read are counted


def test_row_dicts_and_frames_are_logged_alike_in_one_batch(tmp_path) -> None:
    """The fast path logs row dicts; the frame path logs frames; one batch holds both and
    reads back with the same columns and values. Garbage given as dicts never raises."""
    logger = PredictionLogger(str(tmp_path), "churn", "3", flush_seconds=60)
    inputs, outputs = _request(3)
    logger.log(inputs, outputs, "as-frame")
    logger.log_records(inputs.to_dict("records"), outputs.to_dict("records"), "as-dicts")
    for bad_inputs, bad_outputs in [(None, None), ([{"amount": 1.0}], []), ([1, 2], [3, 4]),
                                    ([{"amount": {"nested": [1]}, "plan": b"\xff"}],
                                     [{"prediction": object()}])]:
        logger.log_records(bad_inputs, bad_outputs, "garbage")  # must not raise
    logger.close()
    logged = read_prediction_log(str(tmp_path), "churn")
    frame = logged[logged["request_id"] == "as-frame"].reset_index(drop=True)
    dicts = logged[logged["request_id"] == "as-dicts"].reset_index(drop=True)
    assert len(frame) == len(dicts) == 3
    columns = ["amount", "plan", "output_prediction", "output_probability_1", "model_version"]
    pd.testing.assert_frame_equal(frame[columns], dicts[columns], check_dtype=False)
    assert str(logged["logged_at"].dtype).startswith("datetime64") and logged["logged_at"].notna().all()
    assert logger.dropped >= 3  # the unreadable requests are counted, not written


def test_the_log_writes_each_column_as_writing_every_value_as_text_would(tmp_path) -> None:
    """The writer skips converting columns that already hold only text and None; every
    other object column is still written value by value as text (NaN as 'nan', as before),
    and logged_at is the time of the request, whatever a batch mixes."""
    logger = PredictionLogger(str(tmp_path), "churn", "3", flush_seconds=60)
    before = pd.Timestamp.now(tz="UTC")
    rows = [{"plan": "basic", "note": None, "code": "x", "mixed": 1, "missing": None},
            {"plan": "pro", "note": None, "code": float("nan"), "mixed": "a", "missing": None},
            {"plan": "pro", "note": "late", "code": pd.NA, "mixed": True, "missing": None}]
    logger.log_records(rows, [{"prediction": 1}] * 3, "r")
    logger.close()
    after = pd.Timestamp.now(tz="UTC")
    logged = read_prediction_log(str(tmp_path), "churn")
    assert logged["plan"].tolist() == ["basic", "pro", "pro"]
    assert logged["note"].tolist() == [None, None, "late"]
    assert logged["code"].tolist() == ["x", "nan", "<NA>"]
    assert logged["mixed"].tolist() == ["1", "a", "True"]
    assert logged["missing"].isna().all()
    assert ((logged["logged_at"] >= before) & (logged["logged_at"] <= after)).all()


def test_prediction_logger_drops_rows_when_the_queue_is_full_without_blocking(
        tmp_path, monkeypatch) -> None:
    writing, release = threading.Event(), threading.Event()
    real_write = storage.write_bytes

    def slow_write(uri, data):  # the artifact store hangs while the queue fills up
        writing.set()
        release.wait(timeout=30)
        real_write(uri, data)

    monkeypatch.setattr(storage, "write_bytes", slow_write)
    logger = PredictionLogger(str(tmp_path), "churn", "1", flush_rows=1, flush_seconds=60,
                              max_queue=2)
    try:
        logger.log(*_request(2), "r0")  # taken by the writer, which then hangs
        assert writing.wait(timeout=10)
        started = time.perf_counter()
        for i in range(1, 6):  # r1 and r2 fill the queue; r3..r5 are dropped
            logger.log(*_request(2, start=10 * i), f"r{i}")
        # log() that blocked on the full queue would wait for the hung writer (30 s): the
        # five calls take milliseconds, 5 s leaves room for a loaded machine
        assert time.perf_counter() - started < 5.0, "log() blocked on a full queue"
        assert logger.dropped == 6
    finally:
        release.set()
        logger.close()
    logged = read_prediction_log(str(tmp_path), "churn")
    assert sorted(set(logged["request_id"])) == ["r0", "r1", "r2"]
    assert logger.written_rows == 6


def test_prediction_logger_writes_batches_to_gcs(gcs_emulator) -> None:
    root = f"{gcs_emulator.base_uri}/prediction-log-{uuid.uuid4().hex[:8]}"
    logger = PredictionLogger(root, "churn", "2", flush_seconds=60)
    logger.log(*_request(3), "gcs-1")
    logger.log(*_request(2, start=100), "gcs-2")
    logger.close()
    uris = storage.list_uris(f"{root}/predictions/churn/v2")
    assert uris and all("/date=" in u and u.endswith(".parquet") for u in uris)
    logged = read_prediction_log(root, "churn")
    assert logged["request_id"].value_counts().to_dict() == {"gcs-1": 3, "gcs-2": 2}
    assert sorted(logged["amount"].astype(float)) == [0.0, 1.0, 2.0, 100.0, 101.0]
    assert logger.failed_batches == 0
