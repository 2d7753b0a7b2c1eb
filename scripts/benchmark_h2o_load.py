"""How the training frame reaches a local H2O JVM: imported from Parquet (autokfp's way)
against the anchor, ``h2o.H2OFrame`` uploading the pandas frame (the earlier way).

Each way runs in a fresh local cluster (``--mem`` heap) on the same frame: the training rows
of a Parquet file (default: the 1M-row table ``scripts/benchmark_scale.py --work-dir``
leaves), the target ``--target`` and every text column as an enum. Prints the seconds to
load and the peak resident memory of the process and its JVM (sampled every 0.2 s).

    python scripts/benchmark_h2o_load.py PATH [--target churned] [--drop customer_id]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any


def _load(path: str, target: str, drop: list[str], method: str, mem: str) -> dict[str, Any]:
    import pandas as pd
    import psutil

    from autokfp.training.h2o_automl import H2OCluster, _training_frame

    frame = pd.read_parquet(path).drop(columns=drop)
    labels = frame.pop(target)
    text = [c for c in frame.columns if frame[c].dtype == object]
    data, types, _ = _training_frame(frame, labels, "binary", text)
    del frame
    me = psutil.Process()

    def tree() -> float:
        return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / 1e9

    with H2OCluster(nthreads=2, max_mem_size=mem) as cluster:
        peak, done = [tree()], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree())
                time.sleep(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        if method == "upload":
            import h2o

            loaded = h2o.H2OFrame(data, column_types=types)
        else:
            loaded = cluster.load(data, types)
        seconds = time.monotonic() - started
        done.set()
        watcher.join()
        return {"method": method, "rows": loaded.nrows, "seconds": seconds, "peak_gb": peak[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a Parquet file of training rows")
    parser.add_argument("--target", default="churned")
    parser.add_argument("--drop", nargs="*", default=["customer_id"])
    parser.add_argument("--mem", default="3G")
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.method:
        print(json.dumps(_load(args.path, args.target, args.drop, args.method, args.mem)))
        return 0
    results = {}
    for method in ("import", "upload"):
        out = subprocess.run([sys.executable, __file__, args.path, "--target", args.target,
                              "--drop", *args.drop, "--mem", args.mem, "--method", method],
                             capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    mine, anchor = results["import"], results["upload"]
    print(f"{mine['rows']:,} rows into a local H2O JVM ({args.mem} heap):")
    print(f"  {'':28} {'seconds':>8} {'peak GB':>8}")
    print(f"  {'Parquet, h2o.import_file':28} {mine['seconds']:>8.1f} {mine['peak_gb']:>8.2f}")
    print(f"  {'anchor: h2o.H2OFrame upload':28} {anchor['seconds']:>8.1f} {anchor['peak_gb']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
