"""Memory of the discover step's copy of a training file the first block types otherwise.

Until session 19 a CSV file whose last rows had a value the first block's Arrow type could
not take (text in a number column) or a byte that is not UTF-8, and a JSON-lines file with a
key only its last records have or a byte that is not UTF-8, were loaded whole by pandas
(``load_dataset``, then written as Parquet: the ``whole`` way, the anchor). Now the streamed
copies read them again with the column typed as pandas types it, or as latin-1
(``catalog/csv_stream.py``, ``catalog/chunk_copy.py``: the ``streamed`` way). The same
copy of the file without those last rows (``clean``) is what streaming costs at all.

Session 20 (``--case``): ``index``, a CSV file whose header names all but the first field
of each row (pandas reads that field as the index, which the discover step does not write;
the copy skips it); ``text``, a JSON-lines file whose last records have text in a number
column (pandas keeps an object column of numbers and text, which the step writes as text;
the copy reads the file again with that column as text). Both were loaded whole until then.
``dates`` (``--format sqlite``), a SQLite table whose text date column is other text in its
last 10,000 rows (a chunk that is not dates, a whole column that is); the copy draws the
values ``parse_datetime_text`` tests from the whole column and reads the table again (the
size printed is the database's: both tables). ``late`` is the session-19 case above.

Session 21: ``short``, a CSV file whose last 10 rows lack their last two fields (pandas
fills them with missing values; the copy reads the file again serially, padding them);
``mixed`` (``--format sqlite``), a SQLite table whose integer column ``code`` has text in its
last 10,000 rows (the whole read keeps an object column, which the step writes as text; the
copy reads the table again with that column as text); ``created`` (``--format jsonl``), a
JSON-lines file with a ``created_at`` column of text dates whose last 10 records are other
text (pandas parses the column in every chunk but the last, and not in the whole file; the
copy reads the file again with it as text).

Session 22: ``lines``, a CSV file whose ``support_notes`` has a line break in every 10th row
(quoted values spanning two lines, in every block, so blocks end inside them); ``clean`` is
the same file without the breaks. Loaded whole until then (Arrow's blocks split such a
value; the copy now reads with ``newlines_in_values``).

``zoned`` (``--format jsonl``): the ``created`` file with a time zone on every date
(``2024-01-01T10:00:00Z``); loaded whole until session 22 (a time zone beside other text).

Session 23: ``crlf``, the ``lines`` file with a CRLF line break (a note typed in a web form
or on Windows) where ``lines`` has a LF; loaded whole until then (Arrow could split a CRLF at
a block's end; the copy now hands Arrow reads that never end on a CR).
``nested`` (``--format jsonl``): every record with an ``address`` object (``zip`` only
from the second chunk on) and a ``tags`` array (empty in the first chunk); ``clean`` is the
same file without those two columns. Loaded whole until session 23 (nested values).
``dst`` (``--format jsonl``): the ``zoned`` file's ``created_at`` with ``+01:00`` in its first
200,000 records and ``+02:00`` after (a daylight-saving change, where a chunk begins);
``clean`` is the file with ``+01:00`` throughout. Loaded whole until session 23.

Each way runs in a fresh Python process: its peak resident memory (VmHWM) is measured
after the imports and a warm-up copy of a small file, so "peak added" is what the copy adds,
beside its CPU seconds (user + system, of that process alone: the machine's load does not
inflate them) and wall time. The whole and streamed copies must give the same frame (the
script compares them).

    python scripts/benchmark_streamed_copy.py --mb 200
    python scripts/benchmark_streamed_copy.py --mb 100 --format jsonl
    python scripts/benchmark_streamed_copy.py --mb 200 --case index
    python scripts/benchmark_streamed_copy.py --mb 100 --format jsonl --case text
    python scripts/benchmark_streamed_copy.py --mb 150 --format sqlite --case dates
    python scripts/benchmark_streamed_copy.py --mb 200 --case short
    python scripts/benchmark_streamed_copy.py --mb 200 --format sqlite --case mixed
    python scripts/benchmark_streamed_copy.py --mb 150 --format jsonl --case created
    python scripts/benchmark_streamed_copy.py --mb 200 --case lines
    python scripts/benchmark_streamed_copy.py --mb 150 --format jsonl --case zoned
    python scripts/benchmark_streamed_copy.py --mb 200 --case crlf
    python scripts/benchmark_streamed_copy.py --mb 150 --format jsonl --case nested
    python scripts/benchmark_streamed_copy.py --mb 150 --format jsonl --case dst
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("whole", "streamed", "clean")

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path

from autokfp.catalog.chunk_copy import copy_jsonl_dataset, copy_sql_dataset
from autokfp.catalog.csv_stream import copy_csv_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.config import parse_config
from autokfp.steps.discover import _mixed_as_text
from autokfp.steps.io import write_parquet

def peak_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

folder, fmt, name, out, way = sys.argv[1:]
source = ({"name": "f", "kind": "sql", "url": f"sqlite:///{folder}/tables.db"} if fmt == "sqlite"
          else {"name": "f", "kind": "folder", "path": folder})
config = parse_config({"name": "b", "sources": [source],
                       "training": {"dataset": f"f/{name}", "target": "churned"}})
copy = {"csv": copy_csv_dataset, "jsonl": copy_jsonl_dataset, "sqlite": copy_sql_dataset}[fmt]
warm = "f/warm" if fmt == "sqlite" else f"f/warm.{fmt}"
assert copy(config, warm, out + ".warm", sample_rows=2_000) is not None
load_dataset(config, warm, sample_rows=2_000)
before, cpu, wall = peak_kb(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
if way == "whole":  # what the discover step did with this file before
    frame, _ = load_dataset(config, f"f/{name}")
    _mixed_as_text(frame, f"f/{name}")  # a column of numbers and text, written as text
    write_parquet(out, frame)
else:
    assert copy(config, f"f/{name}", out) is not None, "the copy fell back to the whole read"
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"added_mb": (peak_kb() - before) / 1024,
                  "cpu_s": end.ru_utime - cpu.ru_utime + end.ru_stime - cpu.ru_stime,
                  "wall_s": time.perf_counter() - wall}))
"""


def _frame(rows: int, seed: int = 4):
    import numpy as np

    from autokfp.examples.churn import generate_churn

    frame = generate_churn(rows, seed=seed)
    frame["code"] = np.random.default_rng(seed).integers(0, 9, rows)
    return frame


def _write_tables(folder: Path, rows: int, case: str = "dates") -> int:
    """SQLite tables (``tables.db``) ``clean``, ``late`` and ``warm``: the churn frame with a
    text date column ``due`` (SQLite keeps dates as text), which in ``late`` is other text
    in its last 10,000 rows: the last chunk (100,000 rows) is not dates, the whole column
    is (99% of its values); with ``case`` mixed, ``late``'s last 10,000 rows have text in
    the integer column ``code`` instead. The rows (``late`` has 10,000 more)."""
    import sqlite3

    import pandas as pd

    def dated(frame: pd.DataFrame, start: int) -> pd.DataFrame:
        days = pd.Timestamp("2020-01-01") + pd.to_timedelta((start + frame.index) % 2_000, "D")
        return frame.assign(due=days.strftime("%Y-%m-%d"))

    with sqlite3.connect(folder / "tables.db") as connection:
        dated(_frame(3_000), 0).to_sql("warm", connection, index=False)
        piece = 200_000
        for start in range(0, rows, piece):
            part = dated(_frame(min(piece, rows - start), seed=start), start)
            part.to_sql("clean", connection, index=False, if_exists="append")
            part.to_sql("late", connection, index=False, if_exists="append")
        tail = _frame(10_000, seed=rows)
        tail = (dated(tail, 0).assign(code="n/k") if case == "mixed"
                else tail.assign(due="soon"))
        tail.to_sql("late", connection, index=False, if_exists="append")
    return rows


def write_files(folder: Path, fmt: str, mb: int, case: str = "late") -> int:
    """``clean.<fmt>`` of about ``mb`` MB, ``late.<fmt>``: the same with its last rows the
    first block types otherwise, in latin-1 (``case`` late), its header without the first
    name (index) or its last records with text in a number column (text), and a small
    ``warm.<fmt>``. The rows."""
    import pandas as pd

    per_row = {"csv": 190, "jsonl": 500, "sqlite": 200}[fmt]  # bytes a row, the churn frame
    rows = mb * 1_000_000 // per_row
    if case in ("dates", "mixed"):
        return _write_tables(folder, rows, case)
    piece = 200_000
    clean, late = folder / f"clean.{fmt}", folder / f"late.{fmt}"

    def text(frame: pd.DataFrame, header: bool) -> str:
        if fmt == "csv":
            return str(frame.to_csv(index=False, header=header))
        return "\n".join(json.dumps(r, ensure_ascii=False, default=str)
                         for r in frame.to_dict("records")) + "\n"

    def framed(count: int, seed: int = 4) -> pd.DataFrame:
        frame = _frame(count, seed)
        if case in ("created", "zoned"):  # text dates in a column pandas tries as dates
            days = pd.Timestamp("2020-01-01") + pd.to_timedelta((seed + frame.index) % 2_000,
                                                                "D")
            frame["created_at"] = days.strftime("%Y-%m-%dT10:00:00Z" if case == "zoned"
                                                else "%Y-%m-%d")
        return frame

    (folder / f"warm.{fmt}").write_text(text(framed(3_000), True))
    if case == "dst":  # +01:00, then +02:00 from the second piece (a chunk's start) on
        with open(clean, "w") as out, open(late, "w") as shifted:
            for start in range(0, rows, piece):
                frame = framed(min(piece, rows - start), seed=start)
                days = pd.Timestamp("2020-01-01") + pd.to_timedelta(
                    (start + frame.index) % 2_000, "D")
                frame["created_at"] = days.strftime("%Y-%m-%dT10:00:00+01:00")
                out.write(text(frame, start == 0))
                if start:
                    frame["created_at"] = days.strftime("%Y-%m-%dT10:00:00+02:00")
                shifted.write(text(frame, start == 0))
        return rows
    if case == "nested":  # an object and an array in every record; clean: without them
        with open(clean, "w") as out, open(late, "w") as nested:
            for start in range(0, rows, piece):
                frame = framed(min(piece, rows - start), seed=start)
                out.write(text(frame, start == 0))
                index = start + frame.index
                frame["address"] = [{"city": f"c{i % 97}", **({"zip": 1_000 + i % 500}
                                                               if i >= 100_000 else {})}
                                    for i in index]
                frame["tags"] = [[] if i < 100_000 else ["vip", "web", "new"][: i % 4]
                                 for i in index]
                nested.write(text(frame, start == 0))
        return rows
    if case in ("lines", "crlf"):  # a line break in every 10th row's notes, all through
        with open(clean, "w") as out, open(late, "w") as broken:
            for start in range(0, rows, piece):
                frame = framed(min(piece, rows - start), seed=start)
                out.write(text(frame, start == 0))
                notes = frame["support_notes"].fillna("").astype(str)
                frame["support_notes"] = notes.where(
                    frame.index % 10 != 0,
                    notes + ("\r\n" if case == "crlf" else "\n") + "see the ticket")
                broken.write(text(frame, start == 0))
        return rows
    with open(clean, "w") as out:
        for start in range(0, rows, piece):
            out.write(text(framed(min(piece, rows - start), seed=start), start == 0))
    tail = framed(10, seed=rows)
    if case == "index":  # the header names all but the first field: pandas' index
        with open(late, "w") as out, open(clean) as source:
            out.write(source.readline().split(",", 1)[1])
            while block := source.read(1 << 24):
                out.write(block)
        return rows
    if case == "short":  # the last rows lack their last two fields
        rows_text = "".join(line.rsplit(",", 2)[0] + "\n"
                            for line in text(tail, False).splitlines())
        with open(late, "w") as out, open(clean) as source:
            while block := source.read(1 << 24):
                out.write(block)
            out.write(rows_text)
        return rows
    if case == "text":
        tail = tail.assign(code="n/k")
    elif case in ("created", "zoned"):
        tail = tail.assign(created_at="unknown")
    elif fmt == "csv":  # text in a number column and a byte that is not UTF-8
        tail = tail.assign(code=tail["code"].astype(object), region="Malmø")
        tail.loc[tail.index[-1], "code"] = "n/k"
    else:  # a key the other records lack and a byte that is not UTF-8
        tail = tail.assign(referrer="friend", region="Malmø")
    with open(late, "wb") as out, open(clean, "rb") as source:
        while block := source.read(1 << 24):
            out.write(block)
        out.write(text(tail, False).encode("latin-1" if case == "late" else "utf-8"))
    return rows


def run(folder: Path, fmt: str, way: str) -> dict:
    name = f"{'clean' if way == 'clean' else 'late'}" + ("" if fmt == "sqlite" else f".{fmt}")
    out = folder / f"{way}.parquet"
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), fmt, name, str(out), way],
                          capture_output=True, text=True, cwd=ROOT, timeout=3_600)
    if done.returncode != 0:
        raise SystemExit(f"{way} failed:\n{done.stderr[-3_000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the file (MB)")
    parser.add_argument("--format", choices=["csv", "jsonl", "sqlite"], default="csv")
    parser.add_argument("--case", choices=["late", "index", "text", "dates", "short", "mixed",
                                           "created", "lines", "zoned", "crlf", "nested",
                                           "dst"],
                        default="late",
                        help="what the file has that the first block types otherwise")
    args = parser.parse_args()
    fits = {"late": ("csv", "jsonl"), "index": ("csv",), "text": ("jsonl",),
            "dates": ("sqlite",), "short": ("csv",), "mixed": ("sqlite",),
            "created": ("jsonl",), "lines": ("csv",), "zoned": ("jsonl",),
            "crlf": ("csv",), "nested": ("jsonl",), "dst": ("jsonl",)}
    if args.format not in fits[args.case]:
        parser.error(f"--case {args.case} takes --format {' or '.join(fits[args.case])}")
    with tempfile.TemporaryDirectory(prefix="streamed-copy-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        rows = write_files(folder, args.format, args.mb, args.case)
        size = (folder / ("tables.db" if args.format == "sqlite" else f"late.{args.format}")
                ).stat().st_size / 1e6
        extra = {"index": 0, "dates": 10_000, "mixed": 10_000, "lines": 0,
                 "crlf": 0, "nested": 0, "dst": 0}.get(args.case, 10)
        print(f"{args.format} ({args.case}): {rows + extra:,} rows, {size:.0f} MB (written in "
              f"{time.perf_counter() - started:.0f} s); each way in a fresh process")
        results = {way: run(folder, args.format, way) for way in WAYS}
        import pandas as pd
        import pyarrow.parquet as pq

        if args.case == "nested":  # pandas' frames of dicts and arrays: compare Arrow's
            assert pq.read_table(folder / "streamed.parquet").replace_schema_metadata().equals(
                pq.read_table(folder / "whole.parquet").replace_schema_metadata())
        else:
            whole = pd.read_parquet(folder / "whole.parquet")
            streamed = pd.read_parquet(folder / "streamed.parquet")
            pd.testing.assert_frame_equal(streamed, whole)
            del whole, streamed
    print(f"{'way':<10} {'peak added':>11} {'CPU':>8} {'wall':>8}")
    labels = {"whole": "whole (before, the anchor)", "streamed": "streamed (now)",
              "clean": "streamed, the file with a name for every field" if args.case == "index"
              else "streamed, the file without its line breaks" if args.case in ("lines",
                                                                                 "crlf")
              else "streamed, the file without its nested columns" if args.case == "nested"
              else "streamed, the file in one time zone" if args.case == "dst"
              else "streamed, the file without its last rows"}
    for way in WAYS:
        r = results[way]
        print(f"{way:<10} {r['added_mb']:>8.0f} MB {r['cpu_s']:>6.1f} s {r['wall_s']:>6.1f} s"
              f"   {labels[way]}")
    print("same frame: yes; children's CPU "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.0f} s user in all")


if __name__ == "__main__":
    main()
