"""Batch scoring of a folder of Parquet parts: peak memory and time, streamed
(``autokfp.serving.parts`` + ``score_parts``: one chunk of rows held at a time) beside its
anchor measured in the same run: the folder read whole as ``score_batch`` read it before
(every part with ``pd.read_parquet``, then ``pd.concat``) and scored by ``score_frame``.

The data: ``--parts`` Parquet parts of ``--rows-per-part`` rows, ``--columns`` float
columns and a string key, in hive partition folders (``day=<n>/part-0.parquet``). The
stand-in model is a logistic score of the first column (the model's own cost is not what
is measured). Each measurement runs in a fresh subprocess after imports; the peak is the
process's resident-set high-water mark (``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs``) minus its size before scoring.

    python scripts/benchmark_parts_scoring.py                     # 20 parts x 250k rows
    python scripts/benchmark_parts_scoring.py --parts 40 --rows-per-part 250000

Prints one line per way; always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _predict(rows):
    import numpy as np
    import pandas as pd

    score = 1 / (1 + np.exp(-rows["c0"].to_numpy()))
    return pd.DataFrame({"prediction": (score > 0.5).astype(int), "probability_1": score})


def measure(way: str, folder: str, out: str, chunk_rows: int) -> dict:
    import io

    import pandas as pd

    from autokfp import storage
    from autokfp.serving.batch import parse_target, score_frame, score_parts
    from autokfp.serving.parts import open_parts

    target = parse_target(out)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _rss_kb("VmRSS")
    started, cpu = time.monotonic(), time.process_time()
    if way == "streamed":
        result = score_parts(open_parts(folder), _predict, model="m", version="1",
                             target=target, keys=["key", "day"], chunk_rows=chunk_rows)
    else:  # the anchor: score_batch before this change (no day column: it was not read)
        uris = [u for u in storage.list_uris(folder) if u.endswith(".parquet")]
        frame = pd.concat([pd.read_parquet(io.BytesIO(storage.read_bytes(u))) for u in uris],
                          ignore_index=True)
        result = score_frame(frame, _predict, model="m", version="1", dataset=folder,
                             target=target, keys=["key"], chunk_rows=chunk_rows)
    return {"way": way, "rows": result.rows, "chunks": result.chunks,
            "seconds": round(time.monotonic() - started, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
            "peak_growth_mb": round((_rss_kb("VmHWM") - before) / 1024, 1)}


def make_folder(folder: Path, parts: int, rows: int, columns: int) -> int:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    total = 0
    for part in range(parts):
        frame = pd.DataFrame({f"c{i}": rng.normal(size=rows) for i in range(columns)})
        frame.insert(0, "key", [f"k{total + i:09d}" for i in range(rows)])
        (folder / f"day={part}").mkdir(parents=True)
        frame.to_parquet(folder / f"day={part}" / "part-0.parquet", index=False)
        total += rows
    (folder / "_SUCCESS").write_text("")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rows-per-part", type=int, default=250_000)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, folder, out = args.child
        print(json.dumps(measure(way, folder, out, args.chunk_rows)))
        return
    with tempfile.TemporaryDirectory(prefix="parts-bench-") as tmp:
        folder = Path(tmp) / "input"
        rows = make_folder(folder, args.parts, args.rows_per_part, args.columns)
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**20
        print(f"{args.parts} parts x {args.rows_per_part:,} rows = {rows:,} rows, "
              f"{args.columns} float columns + key, {size:.0f} MB of Parquet; "
              f"chunks of {args.chunk_rows:,}; load {os.getloadavg()[0]:.1f}")
        for way in ("whole (anchor: before)", "streamed"):
            name = way.split()[0]
            done = subprocess.run(
                [sys.executable, __file__, "--chunk-rows", str(args.chunk_rows), "--child",
                 name, str(folder), str(Path(tmp) / f"out-{name}")],
                capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{way}: failed\n{done.stderr[-2000:]}")
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{way:24s} peak growth {figures['peak_growth_mb']:8.1f} MB  "
                  f"{figures['seconds']:6.1f} s wall  {figures['cpu_seconds']:6.1f} CPU s  "
                  f"({figures['rows']:,} rows, {figures['chunks']} chunks)")
        print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
