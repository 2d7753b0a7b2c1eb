"""Batch scoring's engine: chunks written next to the keys, a rerun skips finished chunks,
a crash mid-way loses nothing, and the SQL target is transactional per chunk."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from autokfp.errors import ConfigError, DataError
from autokfp.serving.batch import (
    ROW_KEY,
    ScoringTarget,
    default_keys,
    parse_target,
    read_store_predictions,
    score_frame,
)


def _frame(rows: int = 1050) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(rows)],
                         "x": rng.normal(size=rows), "y": rng.integers(0, 3, rows)})


class Model:
    """A stand-in scorer that counts its calls and can fail on one of them."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls = 0
        self.fail_on_call = fail_on_call

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise MemoryError("pod killed")
        score = 1 / (1 + np.exp(-rows["x"].to_numpy()))
        return pd.DataFrame({"prediction": (score > 0.5).astype(int), "probability_1": score,
                             "probability_0": 1 - score}, index=rows.index)


def _score(frame, model, target, **kw):
    return score_frame(frame, model.predict, model="churn", version="3", dataset="files/c.parquet",
                       target=target, keys=kw.pop("keys", ["customer_id"]), chunk_rows=200, **kw)


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    out = Model().predict(frame)
    return pd.concat([frame[["customer_id"]], out], axis=1).reset_index(drop=True)


def test_predictions_are_written_next_to_the_keys_chunk_by_chunk(tmp_path) -> None:
    frame = _frame()
    result = _score(frame, Model(), parse_target(str(tmp_path / "scores")))
    assert (result.rows, result.chunks, result.scored_chunks, result.skipped_chunks) == (1050, 6, 6, 0)
    assert result.output == str(tmp_path / "scores" / "churn" / "v3" / result.batch_id)
    parts = sorted(p.name for p in (tmp_path / "scores" / "churn" / "v3" / result.batch_id).iterdir())
    assert parts == ["_manifest.json"] + [f"part-{i:05d}.parquet" for i in range(6)]
    written = read_store_predictions(result.output)
    assert list(written.columns) == ["customer_id", "prediction", "probability_1",
                                     "probability_0", "model_version"]
    pd.testing.assert_frame_equal(written.drop(columns=["model_version"]), _expected(frame))
    assert set(written["model_version"]) == {"3"}


def test_a_crash_mid_way_then_a_rerun_scores_only_the_missing_chunks(tmp_path) -> None:
    frame, target = _frame(), parse_target(str(tmp_path / "scores"))
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=4), target)  # chunks 0-2 written, then killed
    rerun = Model()
    result = _score(frame, rerun, target)
    assert rerun.calls == 3 and (result.scored_chunks, result.skipped_chunks) == (3, 3)
    pd.testing.assert_frame_equal(
        read_store_predictions(result.output).drop(columns=["model_version"]), _expected(frame))
    # the same batch once more: nothing to score
    again = Model()
    assert _score(frame, again, target).skipped_chunks == 6 and again.calls == 0
    # changed data is a new batch, written beside the first
    changed = frame.assign(x=frame["x"] + 1)
    assert _score(changed, Model(), target).batch_id != result.batch_id


def test_a_sql_table_gets_each_chunk_in_one_transaction_and_no_duplicates(tmp_path) -> None:
    db = tmp_path / "scores.db"
    frame, target = _frame(), parse_target(f"sqlite:///{db}#churn_scores")
    assert target == ScoringTarget("sql", f"sqlite:///{db}", "churn_scores")
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=3), target)
    result = _score(frame, Model(), target)
    assert (result.scored_chunks, result.skipped_chunks) == (4, 2)
    assert _score(frame, Model(), target).skipped_chunks == 6
    with sqlite3.connect(db) as connection:
        table = pd.read_sql("SELECT * FROM churn_scores ORDER BY chunk, customer_id", connection)
    assert len(table) == 1050 and table["customer_id"].is_unique
    assert set(table["batch_id"]) == {result.batch_id} and sorted(set(table["chunk"])) == list(range(6))
    expected = _expected(frame).sort_values("customer_id").reset_index(drop=True)
    got = table.sort_values("customer_id").reset_index(drop=True)
    np.testing.assert_allclose(got["probability_1"], expected["probability_1"])


def test_without_keys_the_row_number_is_the_key(tmp_path) -> None:
    frame = _frame(450)
    result = _score(frame, Model(), parse_target(str(tmp_path / "s")), keys=[])
    written = read_store_predictions(result.output)
    assert result.keys == [ROW_KEY] and written[ROW_KEY].tolist() == list(range(450))
    assert default_keys(frame, {"customer_id": "identifier (unique per row, carries no signal)",
                                "email": "identifier (unique per row, carries no signal)",
                                "y": "a leak"}) == ["customer_id"]


@pytest.mark.parametrize(("output", "words"), [
    ("", "output is empty"),
    ("sqlite:///x.db", "name the table after '#'"),
    ("postgresql://u:secret@db/crm#bad-name", "name the table"),
    ("ftp://host/x", "use a folder, gs://"),
])
def test_bad_outputs_are_named_without_secrets(output, words) -> None:
    with pytest.raises(ConfigError, match=words) as raised:
        parse_target(output)
    assert "secret" not in str(raised.value)


def test_a_missing_key_column_is_named(tmp_path) -> None:
    with pytest.raises(DataError, match=r"key column\(s\) \['id'\] are not in dataset"):
        _score(_frame(10), Model(), parse_target(str(tmp_path / "s")), keys=["id"])


def test_a_recurring_run_refuses_local_paths_and_literal_passwords() -> None:
    from autokfp.edge.scheduling import schedule_batch_scoring

    form = {"dataset": "s3://lake/new.parquet", "model": "churn"}
    with pytest.raises(ConfigError, match="path on this machine"):
        schedule_batch_scoring({**form, "dataset": "/data/new.parquet"}, "0 0 2 * * *")
    with pytest.raises(ConfigError, match=r"holds a password; write it as \$\{VAR\}") as raised:
        schedule_batch_scoring({**form, "output": "postgresql://u:hunter2@db/crm#scores"},
                               "0 0 2 * * *")
    assert "hunter2" not in str(raised.value)


# ------------------------------------------------------------- a folder of Parquet parts


def test_a_folder_of_parquet_parts_is_one_dataset_in_name_order(tmp_path) -> None:
    from autokfp.steps.score_batch import parts_folder, read_parts_folder

    folder = tmp_path / "export"
    (folder / "day=2").mkdir(parents=True)
    frame = _frame(300)
    frame.iloc[200:].to_parquet(folder / "day=2" / "part-0.parquet", index=False)
    frame.iloc[:100].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[100:200].to_parquet(folder / "part-1.parquet", index=False)
    (folder / "_SUCCESS").write_text("")  # what Spark leaves: skipped
    (folder / ".part-0.parquet.crc").write_text("x")
    for given in (str(folder), f"{folder}/", f"file://{folder}"):
        assert parts_folder(given) == str(folder), given
    assert parts_folder("s3://lake/export/") == "s3://lake/export"
    # a URI without the trailing "/" is one object, as before; a relative name is a dataset id
    assert parts_folder("s3://lake/export") is None and parts_folder("files/export") is None
    assert parts_folder(str(folder / "part-0.parquet")) is None
    loaded = read_parts_folder(str(folder))
    assert (loaded.platform, loaded.location) == ("file", str(folder))
    # in name order ("day=2/part-0" before "part-0"), the same on every run
    expected = pd.concat([frame.iloc[200:], frame.iloc[:100], frame.iloc[100:200]],
                         ignore_index=True)
    pd.testing.assert_frame_equal(loaded.frame, expected)


def test_a_folder_that_cannot_be_scored_is_named(tmp_path) -> None:
    from autokfp.steps.score_batch import read_parts_folder

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"holds no Parquet part \(\*\.parquet\)"):
        read_parts_folder(str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _frame(10).to_parquet(mixed / "a.parquet", index=False)
    _frame(10).to_csv(mixed / "b.csv", index=False)
    with pytest.raises(DataError, match=r"only Parquet parts .* also holds .*b\.csv"):
        read_parts_folder(str(mixed))
    (mixed / "b.csv").unlink()
    _frame(10).drop(columns=["x"]).to_parquet(mixed / "c.parquet", index=False)
    with pytest.raises(DataError, match=r"do not share one set of columns \(.*c\.parquet"):
        read_parts_folder(str(mixed))
