"""A crawl's whole catalog as one comparable value, on a small fixed workload.

``crawl_snapshots(root)`` writes a SQLite warehouse and a folder of CSV files of varied
columns (ints with nulls, floats, text, dates in several formats, booleans, mixed values,
numeric-looking codes kept as text, empty and all-null columns, public tables bundled with
scikit-learn), crawls them twice (a first crawl and an unchanged re-crawl) and returns what
each left behind: the schema versions, the index, the crawl cache, the report, the
metadata-file records and DataHub Lite's aspects and edges, with the crawl's own times and
the temporary folder masked. ``test_catalog_snapshot.py`` compares it with
``data/catalog_snapshot.json.gz``, written by the code before the discovery speed-ups of
session 15 (2537c1c), so a faster crawl that catalogues anything differently fails.

Regenerate the file (only for an intended change of what is catalogued) with
``python tests/engine/catalog/catalog_snapshot.py tests/engine/catalog/data/catalog_snapshot.json.gz``
(run from outside the repository with ``PYTHONPATH`` naming the code to record).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# every file gets this modification time, so file signatures and modified_at are fixed
_MTIME = 1_700_000_000


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 60
    ints = pd.array(rng.integers(0, 500, n), dtype="Int64")
    ints[::7] = pd.NA
    base = pd.Timestamp("2024-03-01 08:00")
    stamps = [base + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 2000, n)]
    mixed: list[Any] = [1, "two", 3.5, None, "2024-01-01", True] * (n // 6)
    frames = {
        "varied": pd.DataFrame({
            "customer_id": np.arange(n),
            "visits": ints,
            "amount": rng.normal(50, 10, n).round(3),
            "ratio": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "note": [f"called about order {i % 9} and asked for a refund" for i in range(n)],
            "active": rng.random(n) < 0.5,
            "flag_text": rng.choice(["yes", "no"], n),
            "zip_code": [f"{z:05d}" for z in rng.integers(500, 99999, n)],
            "education": rng.choice(["1", "2", "3", "4"], n),
            "empty": [None] * n,
            "constant": ["x"] * n,
        }),
        "dates": pd.DataFrame({
            "iso_date": [s.strftime("%Y-%m-%d") for s in stamps],
            "iso_time": [s.isoformat() for s in stamps],
            "us_date": [s.strftime("%m/%d/%Y") for s in stamps],
            "eu_date": [s.strftime("%d.%m.%Y") for s in stamps],
            "text_month": [s.strftime("%d %b %Y") for s in stamps],
            "zoned": [s.strftime("%Y-%m-%dT%H:%M:%S+02:00") for s in stamps],
            "bad_dates": [s.strftime("%Y-%m-%d") if i % 3 else "not a date"
                          for i, s in enumerate(stamps)],
        }),
        "people": pd.DataFrame({
            "email": [f"user{i}@example.com" for i in range(n)],
            "phone": [f"+1 (555) {100 + i:03d}-{1000 + i:04d}" for i in range(n)],
            "full_name": rng.choice(["Ada Lovelace", "Alan Turing", "Grace Hopper",
                                     "Chloé Müller", "José García"], n),
            "ip": [f"10.0.{i % 256}.{(7 * i) % 256}" for i in range(n)],
            "gender": rng.choice(["f", "m"], n),
            "age": rng.integers(18, 90, n),
            "card": ["4111 1111 1111 1111"] * n,
        }),
        "odd": pd.DataFrame({
            "mixed": mixed,
            "all_null": [np.nan] * n,
            "bools_01": rng.integers(0, 2, n),
            "small_codes": rng.integers(1, 4, n),
            "whole_floats": rng.integers(0, 9, n).astype(float),
            "neg": -rng.random(n),
            "big": rng.integers(10**12, 10**13, n),
        }),
    }
    from sklearn import datasets

    for name in ("iris", "wine", "diabetes"):
        frames[name] = getattr(datasets, f"load_{name}")(as_frame=True).frame
    return frames


def make_workload(root: Path) -> list[dict[str, Any]]:
    """The warehouse and the folder under ``root``; their source configs."""
    frames = _frames()
    db, folder = root / "warehouse.db", root / "files"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as connection:
        for name, frame in frames.items():
            frame.astype({c: object for c in frame.columns if frame[c].dtype == "Int64"}
                         ).to_sql(name, connection, index=False)
    for i, (name, frame) in enumerate(frames.items()):
        path = folder / ("sub" if i % 2 else "") / f"{name}.csv"
        frame.to_csv(path, index=False)
    (folder / "blank.csv").write_text("a,b\n")  # a file with no rows: a failed dataset
    for path in [db, *folder.rglob("*.csv")]:
        os.utime(path, (_MTIME, _MTIME))
    return [{"name": "files", "kind": "folder", "path": str(folder), "include": ["*.csv"]},
            {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}"}]


# the time of day after a masked date: 2026-12-06T19:46:32+00:00, 20261206T194632
_CLOCK = re.compile(r"<today>T\d\d:?\d\d:?\d\d(\.\d+)?(\+00:00|Z)?")


_UNIQUE = re.compile(r"(crawl-<today>)-[0-9a-f]{6}\.json")


def _masked(value: Any, root: str, days: tuple[str, ...], now: float) -> Any:
    """Times of the crawl itself (today's dates, epoch seconds or milliseconds of now) and
    the temporary folder replaced by markers; nested JSON text parsed and masked too."""
    if isinstance(value, dict):
        return {k: ("<seconds>" if k == "seconds" else _masked(v, root, days, now))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, root, days, now) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        for scale in (1, 1000):
            if now - 2 * 86400 <= value / scale <= now + 86400:
                return "<now>"
        return value
    if isinstance(value, str):
        if value[:1] in "{[":
            try:
                return _masked(json.loads(value), root, days, now)
            except json.JSONDecodeError:
                pass
        if value.isdigit():
            masked = _masked(int(value), root, days, now)
            if masked == "<now>":
                return masked
        for day in days:
            value = value.replace(day, "<today>").replace(day.replace("-", ""), "<today>")
        value = _CLOCK.sub("<today>", value).replace(root, "<root>")
        value = value.replace(root.lstrip("/"), "<root>")
        return _UNIQUE.sub(r"\1-<unique>.json", value)  # a metadata file's random suffix
    return value


def _catalog(home: Path, root: Path) -> dict[str, Any]:
    catalog = home / "artifacts" / "catalog"
    out: dict[str, Any] = {}
    for name in ("index.json", "crawl-cache.json", "last-crawl.json"):
        out[name] = json.loads((catalog / name).read_text())
    out["last-crawl.json"]["datasets"].sort(key=lambda d: (d["dataset_id"], d["status"]))
    out["versions"] = {str(p.relative_to(catalog)): json.loads(p.read_text())
                       for p in sorted((catalog / "datasets").rglob("v*.json"))}
    out["metadata_files"] = [json.loads(p.read_text())
                             for p in sorted((catalog / "metadata").glob("*.json"),
                                             key=lambda p: p.stat().st_mtime_ns)]
    lite = home / "catalog" / "datahub-lite.db"
    with sqlite3.connect(lite) as connection:
        out["lite_aspects"] = [list(r) for r in connection.execute(
            "SELECT urn, aspect_name, version, metadata, system_metadata FROM "
            "metadata_aspect_v2 ORDER BY urn, aspect_name, version")]
        out["lite_edges"] = [list(r) for r in connection.execute(
            "SELECT src_id, relnship, dst_id, dst_label FROM metadata_edge_v2 "
            "ORDER BY src_id, relnship, dst_id")]
    return _masked(out, str(root), *_clock())


def _clock() -> tuple[tuple[str, ...], float]:
    now = time.time()
    return tuple(time.strftime("%Y-%m-%d", time.gmtime(now - d * 86400)) for d in (0, 1)), now


def crawl_snapshots(root: Path) -> dict[str, Any]:
    """A first crawl and an unchanged re-crawl of the workload: each one's catalog."""

    home = root / "home"
    sources = make_workload(root)
    saved = dict(os.environ)
    os.environ["AUTOKFP_HOME"] = str(home)
    for name in ("DATAHUB_GMS_URL", "DATAHUB_GMS_TOKEN", "AUTOKFP_ARTIFACT_ROOT"):
        os.environ.pop(name, None)
    try:
        return _crawl_twice(root, home, sources)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _crawl_twice(root: Path, home: Path, sources: list[dict[str, Any]]) -> dict[str, Any]:
    from autokfp.catalog.crawl import crawl_sources
    from autokfp.config import parse_config
    from autokfp.settings import Settings

    config = parse_config({"name": "snapshot", "sources": sources,
                           "training": {"dataset": "warehouse/varied", "target": "plan"}})
    settings = Settings.from_env()
    settings.ensure_local_dirs()
    out = {}
    for label in ("first", "again"):
        report = crawl_sources(config, settings=settings)
        out[label] = _catalog(home, root)
        # what the crawl hands the steps after it (the ledger's record of each dataset)
        out[label]["found"] = _masked(
            [{"schema": d.schema.to_dict(), "error": d.error, "notes": d.notes,
              "signature": d.signature, "reused": d.reused} for d in report.found],
            str(root), *_clock())
    return out


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two snapshots differ (the first few paths), for a readable failure."""
    if type(expected) is not type(actual):
        return [f"{path}: {expected!r:.200} != {actual!r:.200}"]
    if isinstance(expected, dict):
        out = [f"{path}/{k}: only in {'expected' if k in expected else 'actual'}"
               for k in sorted(set(expected) ^ set(actual))]
        for k in sorted(set(expected) & set(actual)):
            out += differences(expected[k], actual[k], f"{path}/{k}")
        return out[:20]
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items != {len(actual)}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += differences(e, a, f"{path}[{i}]")
        return out[:20]
    return [] if expected == actual else [f"{path}: {expected!r:.200} != {actual!r:.200}"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        snapshot = crawl_snapshots(Path(folder))
    text = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    with gzip.GzipFile(sys.argv[1], "wb", mtime=0) as handle:  # the same text, same bytes
        handle.write(text.encode())
