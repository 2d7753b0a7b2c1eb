"""A crawl read by worker processes (``catalog.workers``): the same catalog as one process,
a worker that dies stops the crawl naming the dataset and leaves the catalog as it was, a
worker that hangs is stopped and its datasets read in the crawl's own process, and no worker
outlives the crawl."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from autokfp import lifeline
from autokfp.catalog import workers
from autokfp.catalog.crawl import crawl_sources
from autokfp.config import parse_config
from autokfp.errors import ConfigError, DataError
from tests.engine.catalog.catalog_snapshot import crawl_snapshots, differences

EXPECTED = Path(__file__).parent / "data" / "catalog_snapshot.json.gz"


class Forked(list):
    """The worker count of each pool that forked its workers, and their pids."""

    pids: list[int]

    def all_gone(self) -> bool:
        return not any(lifeline.pid_alive(pid) for pid in self.pids)


@pytest.fixture
def forked(monkeypatch):
    """Workers from the first dataset on, two of them whatever the machine; records each
    pool that forked its workers."""
    started = Forked()
    started.pids = []
    real_start = workers.ReadPool._start

    def start(self):
        real_start(self)
        started.append(len(self._workers))
        started.pids += [w.process.pid for w in self._workers]

    monkeypatch.setattr(workers, "START_AFTER", 0)
    monkeypatch.setattr(workers, "available_cpus", lambda: 2)
    monkeypatch.setattr(workers.ReadPool, "_start", start)
    return started


def _files_config(tmp_path: Path, count: int = 8):
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(count):
        pd.DataFrame({"id": range(i, i + 12), "amount": [1.5 * j for j in range(12)],
                      "plan": ["a", "b", "c"] * 4}).to_csv(folder / f"f{i:02d}.csv", index=False)
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as connection:
        for i in range(count):
            pd.DataFrame({"x": range(i, i + 5), "name": list("abcde")}).to_sql(
                f"t{i:02d}", connection, index=False)
    return parse_config({
        "name": "workers", "catalog": {"ingestion": "crawl"},
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)},
                    {"name": "wh", "kind": "sql", "url": f"sqlite:///{db}"}],
        "training": {"dataset": "files/f00.csv", "target": "plan"}})


def test_workers_catalogue_what_one_process_does(tmp_path, catalog_home, forked):
    expected = json.loads(gzip.decompress(EXPECTED.read_bytes()))
    actual = json.loads(json.dumps(crawl_snapshots(tmp_path), sort_keys=True))
    assert forked == [2], "the first crawl's datasets were read by two workers"
    assert actual == expected, "\n".join(differences(expected, actual))
    assert forked.all_gone()


def test_a_worker_killed_mid_crawl_stops_the_crawl_naming_the_dataset(
        tmp_path, catalog_home, forked, monkeypatch):
    from autokfp.catalog.sources import files

    config = _files_config(tmp_path)
    parent = os.getpid()
    real_profile = files.profile_frame

    def profile(sample, dataset_id, *args, **kwargs):
        if dataset_id == "files/f05.csv" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_profile(sample, dataset_id, *args, **kwargs)

    monkeypatch.setattr(files, "profile_frame", profile)
    catalog = Path(catalog_home.artifact_root) / "catalog"
    with pytest.raises(DataError) as caught:
        crawl_sources(config)
    message = str(caught.value)
    assert "'files/f05.csv'" in message and "killed by signal 9 (SIGKILL)" in message
    assert "catalog.workers: 1" in message
    assert forked == [2]
    assert forked.all_gone(), "no worker outlives the crawl"
    assert not (catalog / "index.json").exists()
    assert not (catalog / "crawl-cache.json").exists()
    assert not list(catalog.glob("metadata/*.json")), "no metadata file was written"
    monkeypatch.setattr(files, "profile_frame", real_profile)
    report = crawl_sources(config)  # the next crawl does the work
    assert report.counts()["new"] == 16


def test_a_stalled_worker_is_stopped_and_its_datasets_read_here(
        tmp_path, catalog_home, forked, monkeypatch, caplog):
    from autokfp.catalog.sources import files

    config = _files_config(tmp_path)
    one = crawl_sources(config, workers=1)
    parent = os.getpid()
    real_profile = files.profile_frame

    def profile(sample, dataset_id, *args, **kwargs):
        if dataset_id == "files/f03.csv" and os.getpid() != parent:
            time.sleep(600)  # a lock held at the fork: no CPU, no output
        return real_profile(sample, dataset_id, *args, **kwargs)

    monkeypatch.setattr(files, "profile_frame", profile)
    monkeypatch.setenv("AUTOKFP_CHILD_STALL_SECS", "2")
    monkeypatch.setenv("AUTOKFP_HOME", str(tmp_path / "second-home"))
    with caplog.at_level(logging.WARNING, logger="autokfp.catalog.workers"):
        report = crawl_sources(config)
    assert forked == [2]
    # f03's worker, or (on a machine so loaded that a worker went 2 s without a result or
    # 0.5 CPU-s) one before it: either way the rest was read here
    told = [r.getMessage() for r in caplog.records if "made no progress for 2 s" in r.getMessage()]
    assert len(told) == 1 and "the crawl reads the rest in its own process" in told[0]
    assert forked.all_gone()
    assert [(d.dataset_id, d.status, d.columns, d.pii_columns) for d in report.datasets] == \
        [(d.dataset_id, d.status, d.columns, d.pii_columns) for d in one.datasets]

    def schemas(found):  # what was read (the catalog facts hold the crawl's time)
        return [{**d.schema.to_dict(), "catalog": None} for d in found]

    assert schemas(report.found) == schemas(one.found)


def test_what_a_worker_logs_is_logged_by_the_crawl(tmp_path, catalog_home, forked, caplog):
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(4):
        (folder / f"c{i}.csv").write_bytes("name,city\nJosé,Málaga\nAnn,Köln\n".encode("latin-1"))
    config = parse_config({
        "name": "workers", "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": "files/c0.csv", "target": "city"}})
    with caplog.at_level(logging.WARNING, logger="autokfp.catalog.discovery"):
        crawl_sources(config)
    assert forked == [2]
    told = sorted(r.getMessage() for r in caplog.records if "is not UTF-8" in r.getMessage())
    assert told == [f"'{folder / f'c{i}.csv'}' is not UTF-8; read it as latin-1"
                    for i in range(4)]


def test_workers_setting(monkeypatch):
    assert 1 <= workers.available_cpus() <= len(os.sched_getaffinity(0))
    base = {"name": "x", "sources": [{"name": "a", "kind": "folder", "path": "."}],
            "training": {"dataset": "a/b", "target": "y"}}
    assert parse_config(base).catalog.workers == "auto"
    assert parse_config({**base, "catalog": {"workers": 3}}).catalog.workers == 3
    with pytest.raises(ConfigError, match="catalog.workers must be 'auto' or a whole number"):
        parse_config({**base, "catalog": {"workers": 0}})
    monkeypatch.setattr(workers, "available_cpus", lambda: 3)
    assert workers.resolve_workers("auto") == 3
    assert workers.resolve_workers(1) == 1


def test_a_worker_log_record_with_a_field_pickle_refuses_still_crosses_the_pipe():
    """A record a library logged with an ``extra`` field that cannot be pickled (a lock) is
    handed back with that field as its repr: it must not fail the dataset's result, which the
    crawl's own process (workers: 1) would have logged without trouble."""
    import pickle
    import threading

    collected = workers._Collected()
    logging.getLogger("autokfp.test.workers").addHandler(collected)
    try:
        logging.getLogger("autokfp.test.workers").warning(
            "read %s", "f.csv", extra={"held": threading.Lock(), "rows": 3})
    finally:
        logging.getLogger("autokfp.test.workers").removeHandler(collected)
    back = pickle.loads(pickle.dumps(collected.records))
    assert [r.getMessage() for r in back] == ["read f.csv"]
    assert back[0].rows == 3, "a field pickle takes crosses as it is"
    assert back[0].held.startswith("<unlocked _thread.lock"), back[0].held
    assert back[0].levelname == "WARNING" and back[0].name == "autokfp.test.workers"


def _large(index: int) -> tuple[bytes]:
    return (bytes(4 << 20),)  # 4 MiB: more than a pipe holds, so the worker waits to send


def test_workers_stopped_early_end_on_their_own_not_by_a_signal(monkeypatch):
    """A crawl that stops early (an error, its generator closed) leaves results nobody
    takes; closing the crawl's ends of the pipes must end each worker blocked sending one
    (its send fails) without the signal after ``STOP_GRACE``: so no worker may hold a copy
    of the crawl's end of its own pipe or of an earlier worker's (forked after it)."""
    monkeypatch.setattr(workers, "STOP_GRACE", 20.0)  # the signal would come only after it
    pool = workers.ReadPool(2, start_after=0)
    for index in range(6):
        assert isinstance(pool.offload(lambda i=index: _large(i), (_large, (index,)),
                                       lambda value: value, f"d{index}"), workers.Pending)
    processes = [w.process for w in pool._workers]
    assert len(processes) == 2
    time.sleep(0.5)  # each worker has read its first unit and is sending its result
    started = time.monotonic()
    pool.close()
    took = time.monotonic() - started
    assert [p.exitcode for p in processes] == [0, 0], (
        [p.exitcode for p in processes], f"{took:.1f} s")
    assert took < 20.0
