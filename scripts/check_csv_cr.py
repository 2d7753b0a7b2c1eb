"""Random CSV files with quoted CR, LF and CRLF line breaks in a text column, read by Arrow in
small blocks from the file and through ``csv_stream._Unsplit``, each against ``pd.read_csv``.

pyarrow 23 (``newlines_in_values``) drops the LF of a quoted CRLF when one of its blocks ends
between the CR and the LF; ``_Unsplit`` hands Arrow reads that never end on a CR. This counts
the files whose text column differs from pandas' each way (session 23):

    python scripts/check_csv_cr.py --files 400 --seed 1
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _read(source: object, block: int, threads: bool) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with pcsv.open_csv(source, read_options=pcsv.ReadOptions(block_size=block,
                                                                use_threads=threads),
                       parse_options=pcsv.ParseOptions(newlines_in_values=True),
                       convert_options=pcsv.ConvertOptions(strings_can_be_null=True)) as reader:
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    return [value or "" for value in table.column("note").to_pylist()]


def main() -> None:
    import pandas as pd

    from autokfp.catalog.csv_stream import _Unsplit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pieces = ["a", "b c", "\r\n", "\r", "\n", '""', ",", "xyz", "\r\n\r\n", "é"]
    differs = {"file": 0, "_Unsplit": 0}
    for _ in range(args.files):
        rows = rng.randint(50, 400)
        notes = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
                 for _ in range(rows)]
        ending = rng.choice(["\n", "\r\n"])
        frame = pd.DataFrame({"id": range(rows), "note": notes,
                              "x": [rng.random() for _ in range(rows)]})
        # a lone CR is quoted only when the rows end with CRLF: quote every text value then
        quoting = rng.choice([0, 2]) if ending == "\r\n" else 2
        data = frame.to_csv(index=False, lineterminator=ending, quoting=quoting).encode()
        wanted = pd.read_csv(io.BytesIO(data), keep_default_na=False)["note"].tolist()
        block, threads = rng.randint(200, 3_000), rng.random() < 0.5
        try:
            plain = _read(io.BytesIO(data), block, threads)
        except Exception:  # noqa: BLE001 - a parse error is a difference too
            plain = []
        differs["file"] += plain != wanted
        differs["_Unsplit"] += _read(_Unsplit(io.BytesIO(data)), block, threads) != wanted
    print(f"seed {args.seed}: {args.files} files (blocks of 200-3,000 bytes); text differing "
          f"from pandas': read from the file {differs['file']}, through _Unsplit "
          f"{differs['_Unsplit']}")


if __name__ == "__main__":
    main()
