"""Check what the streamed JSON-lines copy assumes of pandas' dates (``catalog/chunk_copy.py``).

A column ``pd.read_json`` tries as dates by its name (``created_at``) that it parses in some
chunks and not in another is copied as the values JSON gave: the copy assumes the whole
file's read parses it in no case (pandas converts each value on its own, and the values no
chunk could parse are in the whole column), and that where the whole read fails outright
(pandas 2.3: a RuntimeError from ``to_datetime``) a value with a time zone is in the column
(the copy leaves those to the whole read) and a number or boolean too (session 22: a time
zone beside text alone is streamed). This draws random small files (4-8 records, read
2 at a time, values of 24 kinds: dates, epochs, text, numbers, time zones) and counts the
files whose chunks parse the column in some chunks only (beside text, or text and numbers),
those the whole read parses (must be 0) and those it fails on, with and without a time zone
(must be 0), and without a number or boolean (must be 0). Session 23: the files whose
chunks are all dates, in time zones that differ between chunks (read again as the values
JSON gave): those the whole read parses (must be 0) and those it fails on without a number
or boolean (must be 0); ``--dated`` draws such files (dates, zones and epochs, each chunk
mostly of one kind).

    python scripts/check_jsonl_dates.py --files 20000
    python scripts/check_jsonl_dates.py --files 2000 --dated
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import warnings

import pandas as pd

VALUES = ["2024-01-01", "01/02/2024", "13/02/2024", "2024-01-01T10:00:00",
          "2024-01-01T10:00:00Z", "unknown", "", None, 1700000000, 1700000000000, 5,
          "1700000000", "Jan 5 2024", "2024-13-01", "10:00", "nan", "NaT", 2.5e9, True,
          "2024-01-01T10:00:00+02:00", "2024-01-01 10:00:00-05:00", -5, 0, "x Z"]
# --dated (session 23): values of dates only, with and without time zones, and epochs, each
# chunk of two records mostly of one kind
DATED = ["2024-01-01", "2024-01-01T10:00:00", "2024-01-01T10:00:00Z", None, 1700000000,
         "2024-01-01T10:00:00+02:00", "2024-01-01 10:00:00-05:00", "2024-03-31T10:00:00+01:00",
         "2024-04-01T10:00:00+02:00", "2024-01-01T10:00:00+00:00", 1700000000000, True]
ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$", re.I)  # chunk_copy._ZONE


def read(records: list[dict], chunk: int | None = None) -> list[pd.DataFrame]:
    text = "\n".join(json.dumps(r) for r in records)
    if chunk is None:
        return [pd.read_json(io.StringIO(text), lines=True)]
    with pd.read_json(io.StringIO(text), lines=True, chunksize=chunk) as reader:
        return list(reader)


def kind(column: pd.Series) -> str:
    """M dates, S text, O text and numbers, N nothing, else the numpy kind."""
    if column.dtype.kind != "O":
        return str(column.dtype.kind)
    present = [v for v in column if v is not None and v == v]
    if not present:
        return "N"
    return "S" if all(isinstance(v, str) for v in present) else "O"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dated", action="store_true",
                        help="draw dates, time zones and epochs only (session 23)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    some = parsed = failed = failed_unzoned = failed_text = 0
    zones = dict.fromkeys(["files", "text", "parsed", "failed", "failed without", "numbers"], 0)
    for _ in range(args.files):
        if args.dated:  # each chunk (2 records) mostly of one kind, as a file's parts are
            values = []
            for _ in range(rng.choice([2, 3, 4])):
                first = rng.choice(DATED)
                values += [first, first if rng.random() < 0.8 else rng.choice(DATED)]
            records = [{"created_at": value, "x": i} for i, value in enumerate(values)]
        else:
            records = [{"created_at": rng.choice(VALUES), "x": i}
                       for i in range(rng.choice([4, 6, 8]))]
        try:
            chunks = [chunk["created_at"] for chunk in read(records, 2)]
        except Exception:  # noqa: BLE001 - a chunk pandas cannot read: not streamed
            continue
        kinds = {kind(chunk) for chunk in chunks}
        dated = {str(chunk.dtype) for chunk in chunks if kind(chunk) == "M" and chunk.notna().any()}
        if kinds <= {"M", "N"} and len(dated) > 1 and any(", " in d for d in dated):
            # session 23: dates in every chunk (or none), in time zones that differ between
            # chunks (+01:00 and +02:00, or a zone and none): the copy reads it as the
            # values JSON gave, unless a number or boolean is among them
            zones["files"] += 1
            scalar = any(isinstance(r["created_at"], (int, float)) for r in records)
            zones["numbers"] += scalar
            try:
                whole = read(records)[0]["created_at"]
            except Exception:  # noqa: BLE001 - the whole read fails
                zones["failed"] += 1
                zones["failed without"] += not scalar
                if not scalar:
                    print("the whole read failed on zones without a number:",
                          [r["created_at"] for r in records])
                continue
            if whole.dtype.kind == "M":
                zones["parsed"] += 1
                print("the whole read parsed zones that differ between chunks:",
                      [r["created_at"] for r in records], whole.dtype)
            else:
                zones["text"] += 1
            continue
        if "M" not in kinds or not kinds & {"S", "O"}:
            continue
        some += 1
        try:
            whole = read(records)[0]["created_at"]
        except Exception:  # noqa: BLE001 - the whole read fails
            failed += 1
            zoned = any(isinstance(r["created_at"], str) and ZONE.search(r["created_at"].strip())
                        for r in records)
            if not zoned:
                failed_unzoned += 1
                print("the whole read failed without a time zone:",
                      [r["created_at"] for r in records])
            if all(r["created_at"] is None or isinstance(r["created_at"], str)
                   for r in records):
                failed_text += 1
                print("the whole read failed without a number or boolean:",
                      [r["created_at"] for r in records])
            continue
        if whole.dtype.kind == "M":
            parsed += 1
            print("the whole read parsed it:", [r["created_at"] for r in records])
    print(f"{args.files:,} files; {some:,} parsed in some chunks only; the whole read parsed "
          f"{parsed} (must be 0) and failed on {failed:,}, {failed_unzoned} without a time "
          f"zone (must be 0), {failed_text} without a number or boolean (must be 0)")
    print(f"{zones['files']:,} files dates in every chunk, in time zones that differ between "
          f"chunks ({zones['numbers']:,} with a number or boolean): the whole read kept "
          f"{zones['text']:,} as the values JSON gave, parsed {zones['parsed']} (must be 0) and "
          f"failed on {zones['failed']:,}, {zones['failed without']} without a number or "
          "boolean (must be 0)")


if __name__ == "__main__":
    main()
