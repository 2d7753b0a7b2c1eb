"""Check the streamed JSON-lines copy of nested values against the whole read (session 23).

``catalog/chunk_copy.py`` copies a column of nested JSON values (objects, arrays) chunk by
chunk, the Arrow type of the rows so far widened by each chunk's (``_nested_wider``), where
the discover step wrote the whole read's column as Arrow infers it from all its values
(``pa.Table.from_pandas``). This draws random small JSON-lines files (4-10 records, read 2
at a time; each record's ``v`` an object or array of the file's random shape, with keys
left out, nulls, fractions beside whole numbers, empty arrays, a few values of another
kind, or absent) and runs both: the copy (``copy_jsonl_dataset``) and the whole read
(``load_dataset``, written as the step writes it). It counts the files the copy streamed
equal to the whole read (the Parquet tables and the profiles), those it left to the whole
read (a WARNING), those it streamed where the whole read's write fails (must be 0) and
those it streamed otherwise than the whole read (must be 0).

    python scripts/check_jsonl_nested.py --files 2000 --seed 1
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _template(rng: random.Random, depth: int = 0) -> Any:
    """A file's shape of nested values: an object of keys a/b/c or an array, down to leaves
    of one kind (whole number, fraction, text, boolean)."""
    if depth > 0 and (depth > 2 or rng.random() < 0.4):
        return rng.choice(["int", "float", "text", "bool"])
    if rng.random() < 0.6:
        return {key: _template(rng, depth + 1) for key in rng.sample(["a", "b", "c"],
                                                                    rng.randint(1, 3))}
    return [_template(rng, depth + 1)]


def _value(rng: random.Random, shape: Any) -> Any:
    """A record's value of ``shape``: keys left out (20%), nulls (10%), a fraction for a whole
    number (10%), empty arrays (20%), a value of another kind (3%: the whole read's write
    may fail then)."""
    if rng.random() < 0.1:
        return None
    if rng.random() < 0.03:
        return rng.choice([1, 2.5, "x", True, {"a": 1}, [1]])
    if isinstance(shape, dict):
        return {key: _value(rng, kind) for key, kind in shape.items() if rng.random() >= 0.2}
    if isinstance(shape, list):
        return [_value(rng, shape[0]) for _ in range(0 if rng.random() < 0.2
                                                     else rng.randint(1, 3))]
    if shape == "int":
        return rng.randint(-5, 5) if rng.random() >= 0.1 else rng.randint(-5, 5) + 0.5
    return {"float": rng.random(), "text": rng.choice(["x", "", "y z"]),
            "bool": rng.random() < 0.5}[shape]


def main() -> None:
    import pyarrow.parquet as pq

    from autokfp.catalog.chunk_copy import copy_jsonl_dataset
    from autokfp.catalog.discovery import load_dataset
    from autokfp.config import parse_config
    from autokfp.steps.discover import _mixed_as_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rng = random.Random(args.seed)
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="check-nested-") as tmp:
        folder = Path(tmp)
        config = parse_config({"name": "n", "sources": [{"name": "f", "kind": "folder",
                                                         "path": str(folder)}],
                               "training": {"dataset": "f/n.jsonl", "target": "y"}})
        for _ in range(args.files):
            shape = _template(rng)
            records = []
            for i in range(rng.randint(4, 10)):
                record: dict[str, Any] = {"id": i, "y": i % 2}
                if rng.random() < 0.85:
                    record["v"] = _value(rng, shape)
                records.append(record)
            (folder / "n.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
            out = folder / "copy.parquet"
            out.unlink(missing_ok=True)
            schema = copy_jsonl_dataset(config, "f/n.jsonl", str(out), chunk_rows=2)
            frame, loaded = load_dataset(config)
            _mixed_as_text(frame, "f/n.jsonl")
            buffer = io.BytesIO()
            try:
                frame.to_parquet(buffer, index=False)
            except Exception:  # noqa: BLE001 - the whole read's write fails: the step too
                whole = None
            else:
                whole = pq.read_table(io.BytesIO(buffer.getvalue())).replace_schema_metadata()
            if schema is None:
                counts["left to the whole read"] += 1
            elif whole is None:
                counts["STREAMED WHERE THE WHOLE WRITE FAILS"] += 1
                print("streamed, whole write fails:", records)
            elif (pq.read_table(out).replace_schema_metadata().equals(whole)
                  and schema.to_dict() == loaded.to_dict()):
                counts["streamed equal"] += 1
            else:
                counts["STREAMED OTHERWISE"] += 1
                print("streamed otherwise:", records)
            if whole is None:
                counts["(the whole write fails)"] += 1
    print(f"seed {args.seed}: {args.files} files: " + ", ".join(
        f"{key} {value}" for key, value in sorted(counts.items())))


if __name__ == "__main__":
    main()
