"""Batch scoring's engine: chunks written next to the keys, a rerun skips finished chunks,
a crash mid-way loses nothing, and the SQL target is transactional per chunk."""

from __future__ import annotations

import io
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
    assert parts == ["_SUCCESS", "_manifest.json"] + [f"part-{i:05d}.parquet" for i in range(6)]
    assert not (tmp_path / "scores" / "churn" / "v3" / "_temporary").exists()
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


def test_no_batch_folder_appears_before_every_chunk_is_written(tmp_path) -> None:
    """A stopped run leaves its parts staged under _temporary/ (skipped by Parquet readers)
    and no batch folder; the result cannot be read as if it were whole."""
    frame, target = _frame(), parse_target(str(tmp_path / "scores"))
    version_folder = tmp_path / "scores" / "churn" / "v3"
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=4), target)
    (staged,) = (version_folder / "_temporary").iterdir()
    assert [p.name for p in version_folder.iterdir()] == ["_temporary"]
    assert sorted(p.name for p in staged.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    with pytest.raises(DataError, match=r"is not complete \(no _manifest.json\): its run "
                                        r"stopped before the end; rerun the same scoring"):
        read_store_predictions(str(version_folder / staged.name))
    result = _score(frame, Model(), target)
    assert [p.name for p in version_folder.iterdir()] == [staged.name]  # _temporary/ gone
    assert len(read_store_predictions(result.output)) == len(frame)
    # a part cut short afterwards (a copy that stopped, a full disk) is named, with the cure
    import shutil
    from pathlib import Path

    part = Path(result.output) / "part-00002.parquet"
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(DataError, match=r"part part-00002\.parquet \(100 bytes\) cannot be "
                                        r"read as Parquet .* delete the batch folder and rerun"):
        read_store_predictions(result.output)
    shutil.rmtree(result.output)
    again = _score(frame, Model(), target)
    assert again.batch_id == result.batch_id
    pd.testing.assert_frame_equal(read_store_predictions(again.output).drop(
        columns=["model_version"]), _expected(frame))


def test_an_object_store_batch_is_staged_then_moved(gcs_emulator, monkeypatch) -> None:
    """On GCS (the emulator) the parts are staged under _temporary/; the batch prefix gets
    them, then _manifest.json, then _SUCCESS, only at the end. A run stopped while moving
    them is finished by the rerun."""
    from autokfp import storage

    root = f"{gcs_emulator.base_uri}/atomic-{np.random.default_rng().integers(1e9)}"
    frame, target = _frame(), parse_target(f"{root}/scores")
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=4), target)
    names = [u[len(root) + 1:] for u in storage.list_uris(root)]
    assert len(names) == 3 and all(n.startswith("scores/churn/v3/_temporary/") for n in names)
    real_delete, deleted = storage.delete, []

    def stopped_after_two(uri):  # the pod dies while moving the staged parts
        if len(deleted) == 2:
            raise MemoryError("pod killed")
        deleted.append(uri)
        real_delete(uri)

    monkeypatch.setattr(storage, "delete", stopped_after_two)
    with pytest.raises(MemoryError):
        _score(frame, Model(), target)
    monkeypatch.setattr(storage, "delete", real_delete)
    batch = names[0].split("/")[4]
    with pytest.raises(DataError, match="is not complete"):
        read_store_predictions(f"{root}/scores/churn/v3/{batch}")
    rerun = Model()
    result = _score(frame, rerun, target)
    assert rerun.calls == 0 and result.skipped_chunks == 6
    names = [u[len(root) + 1:] for u in storage.list_uris(root)]
    assert names == [f"scores/churn/v3/{batch}/{n}" for n in
                     ["_SUCCESS", "_manifest.json"] + [f"part-{i:05d}.parquet" for i in range(6)]]
    pd.testing.assert_frame_equal(
        read_store_predictions(result.output).drop(columns=["model_version"]), _expected(frame))


def test_a_sql_table_gets_each_chunk_in_one_transaction_and_no_duplicates(tmp_path) -> None:
    db = tmp_path / "scores.db"
    frame, target = _frame(), parse_target(f"sqlite:///{db}#churn_scores")
    assert target == ScoringTarget("sql", f"sqlite:///{db}", "churn_scores")
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=3), target)
    with sqlite3.connect(db) as connection:  # two whole chunks staged, the table untouched
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        staged = pd.read_sql("SELECT chunk, COUNT(*) AS n FROM churn_scores__staging "
                             "GROUP BY chunk", connection)
    assert "churn_scores" not in names and staged.values.tolist() == [[0, 200], [1, 200]]
    result = _score(frame, Model(), target)
    assert (result.scored_chunks, result.skipped_chunks) == (4, 2)
    assert _score(frame, Model(), target).skipped_chunks == 6
    with sqlite3.connect(db) as connection:
        table = pd.read_sql("SELECT * FROM churn_scores ORDER BY chunk, customer_id", connection)
        assert connection.execute("SELECT COUNT(*) FROM churn_scores__staging").fetchone() == (0,)
    assert len(table) == 1050 and table["customer_id"].is_unique
    assert set(table["batch_id"]) == {result.batch_id} and sorted(set(table["chunk"])) == list(range(6))
    expected = _expected(frame).sort_values("customer_id").reset_index(drop=True)
    got = table.sort_values("customer_id").reset_index(drop=True)
    np.testing.assert_allclose(got["probability_1"], expected["probability_1"])


def test_an_existing_table_without_the_columns_fails_at_the_first_chunk(tmp_path) -> None:
    """The batch moves into the table only at the end; a table that cannot take its rows
    is named before more than one chunk is scored, not after all of them."""
    db = tmp_path / "scores.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE churn_scores (customer_id TEXT, prediction INTEGER)")
    model = Model()
    with pytest.raises(DataError, match=r"the table has no column\(s\) probability_1, "
                                        r"probability_0, model_version, batch_id, chunk"):
        _score(_frame(), model, parse_target(f"sqlite:///{db}#churn_scores"))
    assert model.calls == 1


def test_a_postgresql_table_gets_a_batch_whole_or_not_at_all(postgres_server) -> None:
    """On a real PostgreSQL server: a stopped batch leaves the table as it was (its chunks
    wait in <table>__staging); the rerun moves all of it in one transaction, into an
    existing table beside another batch's rows."""
    import sqlalchemy

    database = f"scores_{np.random.default_rng().integers(1e9)}"
    postgres_server.run("postgres", f"CREATE DATABASE {database}")
    url = postgres_server.url(database)
    target = parse_target(f"{url}#public.churn_scores")
    first = _score(_frame(300), Model(), target)  # another batch already in the table
    frame = _frame().assign(x=lambda f: f["x"] * 2)
    with pytest.raises(MemoryError):
        _score(frame, Model(fail_on_call=4), target)
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        table = pd.read_sql("SELECT batch_id, COUNT(*) AS n FROM churn_scores GROUP BY batch_id",
                            connection)
        staged = pd.read_sql("SELECT COUNT(*) AS n FROM churn_scores__staging", connection)
    assert table.values.tolist() == [[first.batch_id, 300]] and staged["n"].tolist() == [600]
    result = _score(frame, Model(), target)
    assert (result.scored_chunks, result.skipped_chunks) == (3, 3)
    with engine.connect() as connection:
        rows = pd.read_sql(sqlalchemy.text("SELECT * FROM churn_scores WHERE batch_id = :b "
                                           "ORDER BY chunk, customer_id"),
                           connection, params={"b": result.batch_id})
        staged = pd.read_sql("SELECT COUNT(*) AS n FROM churn_scores__staging", connection)
    engine.dispose()
    assert staged["n"].tolist() == [0] and len(rows) == 1050 and rows["customer_id"].is_unique
    np.testing.assert_allclose(rows["probability_1"], _expected(frame)["probability_1"])


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


def _spark_like_folder(write, frame: pd.DataFrame) -> None:
    """What Spark / Hive leave for a table partitioned by day: hive partition folders, a
    part outside them, a _SUCCESS marker, checksum files, and a killed attempt's
    _temporary/ folder holding a readable Parquet file with rows that must not count."""
    for relative, rows in (("day=2/part-0.parquet", frame.iloc[200:]),
                           ("day=10/part-0.parquet", frame.iloc[:100]),
                           ("day=10/part-1.parquet", frame.iloc[100:200])):
        buffer = io.BytesIO()
        rows.drop(columns=["y"]).to_parquet(buffer, index=False)
        write(relative, buffer.getvalue())
    stray = io.BytesIO()
    frame.drop(columns=["y"]).to_parquet(stray, index=False)
    write("_temporary/0/_temporary/attempt_1/day=3/part-0.parquet", stray.getvalue())
    write("day=2/_temporary/part-9.parquet", stray.getvalue())
    write(".hidden/part-0.parquet", stray.getvalue())
    write("_SUCCESS", b"")
    write("day=2/.part-0.parquet.crc", b"crc")
    write("_committed_123", b"{}")


def _expected_folder(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in path order (day=10/part-0, day=10/part-1, day=2/part-0) with day typed as
    pyarrow.dataset's hive partitioning types it."""
    rows = pd.concat([frame.iloc[:100], frame.iloc[100:200], frame.iloc[200:]],
                     ignore_index=True).drop(columns=["y"])
    return rows.assign(day=np.array([10] * 200 + [2] * (len(frame) - 200), dtype="int32"))


def _check_folder(folder: str, frame: pd.DataFrame, platform: str, tmp_path,
                  write=None) -> None:
    """open_parts reads what pyarrow.dataset reads; score_parts streams it into parts. A
    part replaced after open_parts by another valid part of the same name and columns is an
    error when it is read, not other rows scored silently."""
    import pyarrow.dataset as ds

    from autokfp.serving.batch import score_parts
    from autokfp.serving.parts import open_parts

    parts = open_parts(folder)
    assert (parts.platform, parts.rows, parts.partition_columns) == (platform, 300, ("day",))
    assert [u[len(folder) + 1:] for u in parts.parts] == [
        "day=10/part-0.parquet", "day=10/part-1.parquet", "day=2/part-0.parquet"]
    expected = _expected_folder(frame)
    chunks = list(parts.chunks(70))
    assert [len(c) for c in chunks] == [70, 70, 70, 70, 20]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected)
    # the same rows pyarrow.dataset itself reads with partitioning="hive"
    filesystem, base = parts.filesystem, folder.split("://", 1)[-1]
    theirs = ds.dataset(base, filesystem=filesystem, format="parquet",
                        partitioning="hive").to_table().to_pandas()
    assert sorted(theirs["customer_id"]) == sorted(expected["customer_id"])
    model, target = Model(), parse_target(str(tmp_path / f"scores-{platform}"))
    result = score_parts(parts, model.predict, model="churn", version="3", target=target,
                         keys=["customer_id", "day"], chunk_rows=70)
    assert (result.rows, result.chunks, model.calls) == (300, 5, 5)
    written = read_store_predictions(result.output)
    pd.testing.assert_frame_equal(
        written.drop(columns=["model_version"]),
        pd.concat([expected[["customer_id", "day"]], Model().predict(expected)], axis=1))
    # the same folder again is the same batch: nothing scored
    again = Model()
    rerun = score_parts(open_parts(folder), again.predict, model="churn", version="3",
                        target=target, keys=["customer_id", "day"], chunk_rows=70)
    assert (rerun.batch_id, rerun.skipped_chunks, again.calls) == (result.batch_id, 5, 0)
    if write is not None:
        listed = open_parts(folder)
        other = io.BytesIO()
        frame.iloc[200:].drop(columns=["y"]).assign(x=lambda f: f["x"] - 1).to_parquet(
            other, index=False)
        write("day=2/part-0.parquet", other.getvalue())
        with pytest.raises(DataError, match=r"reading a part failed during the run "
                                            r"\((StorageError: part day=2/part-0\.parquet "
                                            r"changed since the folder was listed|NotFound)"):
            list(listed.chunks(70))


def test_a_local_folder_reads_hive_partitions_and_skips_what_spark_leaves(tmp_path) -> None:
    from autokfp.serving.parts import open_parts
    from autokfp.steps.score_batch import parts_folder

    folder = tmp_path / "export"

    def write(relative: str, data: bytes) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)

    frame = _frame(300)
    _spark_like_folder(write, frame)
    for given in (str(folder), f"{folder}/", f"file://{folder}"):
        assert parts_folder(given) == str(folder), given
    assert parts_folder("s3://lake/export/") == "s3://lake/export"
    # a URI without the trailing "/" is one object, as before; a relative name is a dataset id
    assert parts_folder("s3://lake/export") is None and parts_folder("files/export") is None
    assert parts_folder(str(folder / "day=2" / "part-0.parquet")) is None
    _check_folder(str(folder), frame, "file", tmp_path, write)
    # a changed part (same name, same size or not) is another batch
    before = open_parts(str(folder)).fingerprint
    changed = frame.iloc[200:].drop(columns=["y"]).assign(x=lambda f: f["x"] + 1)
    changed.to_parquet(folder / "day=2" / "part-0.parquet", index=False)
    assert open_parts(str(folder)).fingerprint != before


def test_an_s3_prefix_reads_hive_partitions_and_skips_what_spark_leaves(s3_server,
                                                                         tmp_path) -> None:
    import boto3

    key = f"export-{tmp_path.name}"
    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    frame = _frame(300)
    def write(relative: str, data: bytes) -> None:
        client.put_object(Bucket=s3_server.bucket, Key=f"{key}/{relative}", Body=data)

    _spark_like_folder(write, frame)
    _check_folder(f"{s3_server.base_uri}/{key}", frame, "s3", tmp_path, write)


def test_a_gcs_prefix_reads_hive_partitions_and_skips_what_spark_leaves(gcs_emulator,
                                                                        tmp_path) -> None:
    from autokfp import storage

    prefix = f"{gcs_emulator.base_uri}/export-{tmp_path.name}"
    frame = _frame(300)
    def write(relative: str, data: bytes) -> None:
        storage.write_bytes(f"{prefix}/{relative}", data)

    _spark_like_folder(write, frame)
    _check_folder(prefix, frame, "gcs", tmp_path, write)


PARTS_THREADS = """
import os, sys
import pyarrow as pa
from autokfp.serving.parts import open_parts
threads = lambda: len(os.listdir("/proc/self/task"))
# to_pandas converts columns on Arrow's CPU pool: start it first, so only threads that
# reading starts are counted
pa.table({f"c{i}": [str(j) for j in range(2000)] for i in range(16)}).to_pandas()
before = threads()
parts = open_parts(sys.argv[1])
rows = sum(len(chunk) for chunk in parts.chunks(70))
print(rows, threads() - before)
"""


def test_reading_a_folder_of_parts_starts_no_arrow_thread(tmp_path) -> None:
    """The parts are read with ParquetFile, one after the other, not through a
    pyarrow.dataset scan, whose Arrow I/O thread can abort the interpreter at exit
    (std::terminate; autokfp.catalog.batches.ParquetFileScan): reading a local folder of
    parts, hive partitions and all, leaves no thread behind."""
    import subprocess
    import sys

    folder = tmp_path / "export"

    def write(relative: str, data: bytes) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)

    _spark_like_folder(write, _frame(300))
    done = subprocess.run([sys.executable, "-c", PARTS_THREADS, str(folder)],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.split() == ["300", "0"], done.stderr[-2000:]


def test_a_folder_is_scored_as_it_is_read(tmp_path, monkeypatch) -> None:
    """Streamed: chunk k is scored and written before chunk k+1 is read from the parts (the
    memory this keeps flat: scripts/benchmark_parts_scoring.py). A part that vanished after
    open_parts is a DataError naming the folder, with the chunks before it written."""
    from autokfp.serving.batch import score_parts
    from autokfp.serving.parts import PartsDataset, open_parts

    folder = tmp_path / "export"
    folder.mkdir()
    frame = _frame(600)
    for index in range(3):
        frame.iloc[index * 200:(index + 1) * 200].to_parquet(folder / f"part-{index}.parquet",
                                                             index=False)
    read = []
    chunks = PartsDataset.chunks

    def counted(self, chunk_rows):
        for rows in chunks(self, chunk_rows):
            read.append(len(rows))
            yield rows

    monkeypatch.setattr(PartsDataset, "chunks", counted)
    target = parse_target(str(tmp_path / "scores"))
    written_before_call = []

    def predict(rows: pd.DataFrame) -> pd.DataFrame:
        written_before_call.append((len(read), len(list((tmp_path / "scores").rglob("part-*")))))
        return Model().predict(rows)

    result = score_parts(open_parts(str(folder)), predict, model="churn", version="3",
                         target=target, keys=["customer_id"], chunk_rows=150)
    assert written_before_call == [(1, 0), (2, 1), (3, 2), (4, 3)] and read == [150] * 4
    pd.testing.assert_frame_equal(
        read_store_predictions(result.output).drop(columns=["model_version"]),
        _expected(frame.drop(columns=["y"])).drop(columns=["y"], errors="ignore"))

    parts = open_parts(str(folder))
    (folder / "part-2.parquet").unlink()
    with pytest.raises(DataError, match=r"dataset folder .*export: reading a part failed "
                                        r"during the run .* rerun once the folder is stable"):
        score_parts(parts, Model().predict, model="churn", version="3",
                    target=parse_target(str(tmp_path / "other")), keys=["customer_id"],
                    chunk_rows=100)


def test_a_folder_that_cannot_be_scored_is_named(tmp_path) -> None:
    from autokfp.serving.parts import open_parts

    empty = tmp_path / "empty"
    (empty / "_temporary").mkdir(parents=True)
    _frame(10).to_parquet(empty / "_temporary" / "a.parquet", index=False)
    with pytest.raises(DataError, match=r"holds no Parquet part \(\*\.parquet; names starting "
                                        r"with '_' or '\.' are skipped\)"):
        open_parts(str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _frame(10).to_parquet(mixed / "a.parquet", index=False)
    _frame(10).to_csv(mixed / "b.csv", index=False)
    with pytest.raises(DataError, match=r"only Parquet parts .* also holds b\.csv"):
        open_parts(str(mixed))
    (mixed / "b.csv").unlink()
    _frame(10).drop(columns=["x"]).to_parquet(mixed / "c.parquet", index=False)
    with pytest.raises(DataError, match=r"do not share one set of columns \(c\.parquet has "
                                        r"customer_id, y; a\.parquet has customer_id, x, y"):
        open_parts(str(mixed))
    _frame(10).assign(x="text").to_parquet(mixed / "c.parquet", index=False)
    with pytest.raises(DataError, match=r"column types cannot be brought to one"):
        open_parts(str(mixed))
    (mixed / "c.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"a part cannot be read as Parquet"):
        open_parts(str(mixed))


def _same_size_rewrite(path, frame: pd.DataFrame) -> None:
    """Rewrite a part in place with other values and the same size (plain encoding, no
    compression), its mtime then set back to the one before: a rewrite within the
    filesystem's mtime granularity, as a listing's size/mtime/inode sees it."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    before = path.stat()
    table = pa.Table.from_pandas(frame.assign(x=-frame["x"]), preserve_index=False)
    with open(path, "r+b") as handle:  # in place: the same inode
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="none", use_dictionary=False)
        handle.write(buffer.getvalue().to_pybytes())
        handle.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)


@pytest.mark.parametrize("verify_bytes", [32 << 20, 0], ids=["read-once", "ctime"])
def test_a_same_size_rewrite_within_the_mtime_granularity_is_seen(tmp_path, monkeypatch,
                                                                   verify_bytes) -> None:
    """A local part rewritten in place after the listing, to the same size and with its
    mtime set back, is an error when read: a small part's bytes are checked against the
    listed SHA-256 (read once, parsed from memory), a larger one's ctime changed. Before
    the check it was read silently, other rows scored under the listed fingerprint."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.serving import parts as parts_module
    from autokfp.serving.parts import open_parts

    monkeypatch.setattr(parts_module, "VERIFY_BYTES", verify_bytes, raising=False)
    folder = tmp_path / "export"
    folder.mkdir()
    frame = _frame(300).drop(columns=["y"])
    for index in range(2):
        pq.write_table(pa.Table.from_pandas(frame.iloc[index * 150:(index + 1) * 150],
                                            preserve_index=False),
                       folder / f"part-{index}.parquet", compression="none",
                       use_dictionary=False)
    listed = open_parts(str(folder))
    pd.testing.assert_frame_equal(pd.concat(listed.chunks(100), ignore_index=True), frame)
    if verify_bytes:  # read once: checked by content, so a touch or a chmod changes no row
        (folder / "part-0.parquet").chmod(0o640)
        (folder / "part-0.parquet").touch()
        pd.testing.assert_frame_equal(pd.concat(listed.chunks(100), ignore_index=True), frame)
    _same_size_rewrite(folder / "part-1.parquet", frame.iloc[150:].reset_index(drop=True))
    with pytest.raises(DataError, match=r"part-1\.parquet changed since the folder was listed"):
        list(listed.chunks(100))
    assert open_parts(str(folder)).fingerprint != listed.fingerprint


def test_a_small_part_is_checked_by_its_content_whatever_its_timestamps(tmp_path,
                                                                        monkeypatch) -> None:
    """On a filesystem whose timestamps cannot tell (coarse, or kept by no one: every stamp
    the same), a small local part's content still can: the bytes parsed are the bytes the
    listing hashed, else an error; a part left as listed reads as before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autokfp.serving import parts as parts_module
    from autokfp.serving.parts import open_parts

    monkeypatch.setattr(parts_module, "_file_stamp",
                        lambda path: (path.stat().st_size, 0, 0, 0, 0))
    folder = tmp_path / "export"
    folder.mkdir()
    frame = _frame(200).drop(columns=["y"])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                   folder / "part-0.parquet", compression="none", use_dictionary=False)
    listed = open_parts(str(folder))
    pd.testing.assert_frame_equal(pd.concat(listed.chunks(64), ignore_index=True), frame)
    _same_size_rewrite(folder / "part-0.parquet", frame)
    with pytest.raises(DataError, match=r"part-0\.parquet changed since the folder was listed "
                                        r"\(its content: was sha256:"):
        list(listed.chunks(64))


@pytest.mark.parametrize("output", ["folder", "sql"])
def test_a_model_that_drops_rows_writes_nothing_of_that_chunk(tmp_path, output) -> None:
    """A model whose predict answers fewer rows than it was given (or more) is a DataError
    naming the dataset and chunk, before that chunk is written: keys and predictions are
    never written shifted against each other (before: pd.concat lined them up by position
    and filled the gap with NaN). The chunks before it stay written, and a rerun with a
    sound model resumes after them. A Series or a 1-D array answer is the column
    'prediction'; any other answer is named."""
    frame = _frame(500)
    target = parse_target(str(tmp_path / "scores") if output == "folder"
                          else f"sqlite:///{tmp_path / 'scores.db'}#scores")

    class DropsOnThirdCall(Model):
        def predict(self, rows):
            answer = super().predict(rows)
            return answer.iloc[:-1] if self.calls == 3 else answer

    with pytest.raises(DataError, match=r"dataset 'files/c\.parquet', chunk 2: the model's "
                                        r"predict returned 99 rows for the chunk's 100"):
        score_frame(frame, DropsOnThirdCall().predict, model="churn", version="3",
                    dataset="files/c.parquet", target=target, keys=["customer_id"],
                    chunk_rows=100)
    sound = Model()
    result = score_frame(frame, sound.predict, model="churn", version="3",
                         dataset="files/c.parquet", target=target, keys=["customer_id"],
                         chunk_rows=100)
    assert (result.skipped_chunks, result.scored_chunks, sound.calls) == (2, 3, 3)
    if output == "folder":
        pd.testing.assert_frame_equal(
            read_store_predictions(result.output).drop(columns=["model_version"]),
            _expected(frame))

    def as_array(rows):
        return Model().predict(rows)["probability_1"].to_numpy()

    arrays = score_frame(frame, as_array, model="churn", version="4",
                         dataset="files/c.parquet", target=parse_target(str(tmp_path / "a")),
                         keys=["customer_id"], chunk_rows=250)
    assert arrays.prediction_columns == ["prediction"]
    with pytest.raises(DataError, match=r"chunk 0: the model's predict returned list, not a "
                                        r"frame"):
        score_frame(frame, lambda rows: [0.5] * len(rows), model="churn", version="5",
                    dataset="files/c.parquet", target=parse_target(str(tmp_path / "b")),
                    keys=["customer_id"], chunk_rows=250)
