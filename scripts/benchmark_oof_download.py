"""Memory of the train step's download of the leader's out-of-fold predictions.

The H2O train step fetches the leader's cross-validation holdout predictions (one row per
training row) for the CV spread, calibration and selection's pooled estimate
(``holdout.npz``). Before, it downloaded the whole frame with ``as_data_frame`` (CSV, then
pandas, the classifier's ``predict`` label column as text) and took the class columns from
it (the anchor, ``whole``); now ``_holdout_predictions`` downloads only the class columns,
``OOF_CHUNK_ROWS`` rows at a time, into one float64 array (``chunked``).

A local H2O JVM is started; for each ``--rows`` a frame shaped as a binary classifier's
holdout predictions (``predict`` as an enum, ``p0``, ``p1``) is imported from Parquet, and
each way runs in a fresh Python process connected to the JVM (``h2o.connect``): its peak
resident memory is reset once the frame is found, so "peak added" is what the download and
the holdout array add to the process, beside its CPU seconds and wall time. Both ways must
give the same scores (the script compares checksums).

    python scripts/benchmark_oof_download.py --rows 1000000 4000000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIECE_ROWS = 1_000_000
WAYS = ("whole", "chunked")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_frame(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return
    part = Path(str(path) + ".part")
    writer = None
    try:
        for piece, start in enumerate(range(0, rows, PIECE_ROWS)):
            n = min(PIECE_ROWS, rows - start)
            p1 = np.random.default_rng(piece).random(n)
            table = pa.table({"predict": np.where(p1 > 0.5, "1", "0"), "p0": 1.0 - p1, "p1": p1})
            writer = writer or pq.ParquetWriter(str(part), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    part.rename(path)


def worker(way: str, url: str, frame_id: str) -> dict[str, Any]:
    """In a fresh process: the download one way; what it added to the process's peak."""
    import h2o
    import numpy as np

    from autokfp.training.h2o_automl import _holdout_predictions, _holdout_scores

    h2o.connect(url=url, verbose=False)
    h2o.no_progress()
    frame = h2o.get_frame(frame_id)
    rows = int(frame.nrows)

    class Leader:  # what _holdout_predictions asks of the leader
        def cross_validation_holdout_predictions(self) -> Any:
            return frame

    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    cpu, started = time.process_time(), time.perf_counter()
    if way == "whole":  # the earlier code: the whole frame, then its class columns
        predicted = frame.as_data_frame(use_multi_thread=False)
    else:
        predicted = _holdout_predictions(Leader(), "binary", ["0", "1"])
    held = _holdout_scores(predicted, "binary", ["0", "1"], rows)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert held is not None, "no scores"
    scores = held[1]
    return {"seconds": seconds, "cpu": cpu, "added_gb": (_status_kb("VmHWM") - before) / 1024**2,
            "checksum": float(np.round(scores[:, 1].sum(), 3)), "shape": list(scores.shape)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--h2o-mem", default="3G")
    parser.add_argument("--data-dir", help="where the Parquet frames go (kept, reused)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker)), flush=True)
        return 0

    import h2o

    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="autokfp-oof-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    h2o.init(ip="127.0.0.1", port=port, name=f"oof-{port}", nthreads=2,
             max_mem_size=args.h2o_mem, verbose=False)
    h2o.no_progress()
    url = f"http://127.0.0.1:{port}"
    print(f"Out-of-fold download: {', '.join(f'{r:,}' for r in args.rows)} rows (a binary "
          f"classifier's holdout frame: predict, p0, p1); {os.cpu_count()} cores; H2O heap "
          f"{args.h2o_mem}")
    print(f"  {'rows':>11} {'way':<8} {'seconds':>8} {'CPU s':>7} {'peak added':>11} "
          f"{'load':>5}   (whole: the earlier code, the anchor)")
    try:
        for rows in args.rows:
            path = folder / f"oof-{rows}.parquet"
            write_frame(path, rows)
            frame = h2o.import_file(str(path), col_types={"predict": "enum"})
            checksums = {}
            for way in WAYS:
                load = os.getloadavg()[0]
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", way, url, frame.frame_id],
                    capture_output=True, text=True, cwd=ROOT,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if done.returncode != 0:
                    print(f"  {rows:>11,} {way:<8} FAILED {done.stderr.strip().splitlines()[-1:]}")
                    continue
                result = json.loads(next(line for line in done.stdout.splitlines()
                                         if line.startswith("RESULT "))[7:])
                checksums[way] = result["checksum"]
                print(f"  {rows:>11,} {way:<8} {result['seconds']:>8.1f} {result['cpu']:>7.1f} "
                      f"{result['added_gb']:>8.2f} GB {load:>5.1f}", flush=True)
            same = len(set(checksums.values())) == 1 and len(checksums) == len(WAYS)
            print(f"  {'':>11} scores {'equal' if same else 'DIFFER'} "
                  f"(sum of p1: {checksums})", flush=True)
            h2o.remove(frame)
    finally:
        h2o.cluster().shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
