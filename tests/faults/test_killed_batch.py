"""Fault injection: ``kill -9`` of batch scoring (``autokfp.serving.batch.score_frame``) at
its writes, to a folder and to a SQL table (see ``killed_step.py``).

A killed run leaves only whole chunks: every part file that exists parses and holds its
whole chunk (a part is written to a temporary name and renamed), staged under
``_temporary/`` so that no batch folder exists until it is complete; the SQL table holds
none of the batch until every chunk is there (they wait in ``scores__staging``, which holds
no rows of a chunk whose transaction did not commit, even when the kill lands after the rows
went in). The rerun scores only the missing chunks, and the result equals an uninterrupted
run's, with no row twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.faults import StepWorker

ROOT = Path(__file__).resolve().parents[2]
ROWS, CHUNK = 1050, 200  # 6 chunks, the last one of 50 rows


def run(target: str, result_path: str) -> None:
    """The child's step: score a seeded frame with a stand-in model, write the result."""
    from autokfp.serving.batch import parse_target, score_frame

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(ROWS)],
                          "x": rng.normal(size=ROWS)})

    def predict(rows: pd.DataFrame) -> pd.DataFrame:
        score = 1 / (1 + np.exp(-rows["x"].to_numpy()))
        return pd.DataFrame({"prediction": (score > 0.5).astype(int), "probability_1": score},
                            index=rows.index)

    result = score_frame(frame, predict, model="churn", version="3", dataset="files/c.parquet",
                         target=parse_target(target), keys=["customer_id"], chunk_rows=CHUNK)
    Path(result_path).write_text(json.dumps(result.to_dict(), default=str))


@pytest.fixture(scope="module")
def worker():
    """The step runs, each forked from one warm process (``step_worker.py``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    started = StepWorker(env, ["autokfp.serving.batch", "tests.faults.test_killed_batch"])
    try:
        yield started
    finally:
        started.close()


def _step(worker: StepWorker, tmp: Path, target: str, root: Path, name: str, kill_at: int = 0):
    spec = tmp / f"spec-{name}-{kill_at}.json"
    events = tmp / f"events-{name}-{kill_at}.txt"
    result = tmp / f"result-{name}-{kill_at}.json"
    spec.write_text(json.dumps({
        "kill_at": kill_at, "roots": [str(root)], "events": str(events),
        "call": "tests.faults.test_killed_batch:run",
        "kwargs": {"target": target, "result_path": str(result)}}))
    done = worker.run(spec, timeout=300)
    points = [tuple(line.split("\t")[1:3]) for line in events.read_text().splitlines()
              if "\t" in line]
    outcome = json.loads(result.read_text()) if result.exists() else None
    return done, points, outcome


def _sizes() -> list[int]:
    return [min(CHUNK, ROWS - start) for start in range(0, ROWS, CHUNK)]


def _folder_parts(root: Path) -> dict[int, pd.DataFrame]:
    parts = {}
    for path in root.rglob("part-*.parquet"):
        parts[int(path.stem.split("-")[1])] = pd.read_parquet(path)  # each one parses
    return parts


def _table(db: Path, name: str = "scores") -> pd.DataFrame:
    if not db.exists():
        return pd.DataFrame(columns=["chunk", "customer_id"])
    with sqlite3.connect(db) as connection:
        names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master")]
        if name not in names:
            return pd.DataFrame(columns=["chunk", "customer_id"])
        return pd.read_sql(f"SELECT * FROM {name} ORDER BY chunk, customer_id", connection)


def _whole_chunks(chunks: dict[int, pd.DataFrame]) -> None:
    sizes = _sizes()
    for chunk, rows in chunks.items():
        assert len(rows) == sizes[chunk], f"chunk {chunk} holds {len(rows)} of {sizes[chunk]} rows"
        assert list(rows["customer_id"]) == [f"c{i:05d}" for i in
                                             range(chunk * CHUNK, chunk * CHUNK + sizes[chunk])]


@pytest.mark.parametrize("kind", ["folder", "sqlite"])
def test_kill_9_of_batch_scoring_leaves_whole_chunks_and_a_rerun_completes(worker, tmp_path,
                                                                            kind):
    def target_of(name: str) -> tuple[str, Path, Path]:
        root = tmp_path / name
        root.mkdir()
        if kind == "folder":
            return str(root / "scores"), root, root / "scores"
        return f"sqlite:///{root / 'scores.db'}#scores", root, root / "scores.db"

    clean_target, clean_root, clean_out = target_of("clean")
    done, counted, clean = _step(worker, tmp_path, clean_target, clean_root, "clean")
    assert done.returncode == 0, done.stderr[-2000:]
    if kind == "folder":
        expected = pd.concat([_folder_parts(clean_out)[c] for c in range(6)], ignore_index=True)
        writes = [i for i, (k, t) in enumerate(counted, start=1)
                  if k == "os.rename" and "part-" in t]
        opens = [i for i, (k, t) in enumerate(counted, start=1)
                 if k == "open-for-write" and "part-" in t]
        # before chunk 0's temp file; chunk 2 written but not renamed; the manifest's rename
        manifest = [i for i, (k, t) in enumerate(counted, start=1)
                    if k == "os.rename" and "_manifest" in t][0]
        kill_points = {opens[0]: 0, writes[2]: 2, manifest: 6}  # -> chunks that must exist
    else:
        expected = _table(clean_out).drop(columns=["batch_id"])
        inserted = [i for i, (k, _) in enumerate(counted, start=1)
                    if k == "sql.inserted-uncommitted"]
        inserts = [i for i, (k, _) in enumerate(counted, start=1) if k == "sql.insert"]
        # chunk 0 being inserted; chunk 3's rows in, its transaction not committed
        kill_points = {inserts[0]: 0, inserted[3]: 3}  # chunk 3 never committed: rolled back
    assert len(expected) == ROWS and expected["customer_id"].is_unique

    for kill_at, whole in kill_points.items():
        target, root, out = target_of(f"kill-{kill_at}")
        done, reached, _ = _step(worker, tmp_path, target, root, "kill", kill_at)
        assert done.returncode == -9, (kill_at, done.returncode, done.stderr[-2000:])
        assert [k for k, _ in reached] == [k for k, _ in counted[:kill_at]]
        if kind == "folder":
            written = _folder_parts(out)
        else:  # the chunks wait in the staging table; the table holds none of the batch
            assert _table(out).empty
            table = _table(out, "scores__staging")
            written = {int(c): rows.reset_index(drop=True) for c, rows in table.groupby("chunk")}
        _whole_chunks(written)  # nothing half-written is visible
        if kind == "folder":  # and no batch folder: the parts are staged under _temporary/
            assert [p.name for p in (out / "churn" / "v3").iterdir()] == ["_temporary"]
        assert sorted(written) == list(range(whole)), (kill_at, sorted(written))

        done, _, rerun = _step(worker, tmp_path, target, root, "rerun")
        assert done.returncode == 0, done.stderr[-2000:]
        assert rerun["skipped_chunks"] == len(written)
        assert rerun["scored_chunks"] == 6 - len(written)
        if kind == "folder":
            final = pd.concat([_folder_parts(out)[c] for c in range(6)], ignore_index=True)
            assert (out / "churn" / "v3" / rerun["batch_id"] / "_manifest.json").exists()
        else:
            final = _table(out).drop(columns=["batch_id"])
        assert final["customer_id"].is_unique
        pd.testing.assert_frame_equal(final.reset_index(drop=True), expected.reset_index(drop=True))
