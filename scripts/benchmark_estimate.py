"""Peak memory and time of selection's pooled estimate at evaluate's 10M-row shape.

Evaluate (and select) compare candidates on the rows every one of them scored out of sample
(H2O's out-of-fold predictions of every training row) pooled with the test rows
(``autokfp.modeling.estimate.pool_rows``), then bootstrap the metric over them
(``metric_with_interval``). At 10M rows that is 8M out-of-fold + 2M test rows. This script
builds one binary candidate's ``holdout.npz`` of that size and measures, in this process:

    pool_rows             peak resident memory (VmHWM) and CPU seconds
    metric_with_interval  the same, with --samples bootstrap samples (selection uses 200)

    python scripts/benchmark_estimate.py                       # 8M + 2M rows
    python scripts/benchmark_estimate.py --held 800000 --test 200000

The anchor (``BEFORE``) is pool_rows as it was, with Python sets and dicts of the positions
(2026-12-05, load ~13, run with the code before f85c0e2): 3.18 GB peak from 0.45 GB before
it, 9.9 CPU s (162 s wall: the CPU seconds are what compares on a shared machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

BEFORE = {(8_000_000, 2_000_000): {"pool_peak_gb": 3.18, "pool_cpu_seconds": 9.9}}


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def main() -> None:
    import numpy as np
    import pandas as pd

    from autokfp.modeling.estimate import metric_with_interval, pool_rows, save_holdout

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=8_000_000, help="out-of-fold rows")
    parser.add_argument("--test", type=int, default=2_000_000, help="test rows")
    parser.add_argument("--samples", type=int, default=3, help="bootstrap samples")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    meta = {"task": "binary", "class_labels": ["0", "1"], "primary_metric": "auc",
            "target": "churned"}
    with tempfile.TemporaryDirectory(prefix="autokfp-estimate-") as work:
        engine = Path(work, "artifacts", "engine")
        engine.mkdir(parents=True)
        p = rng.random(args.held)
        save_holdout(engine, np.arange(args.held), np.c_[1 - p, p],
                     (rng.random(args.held) < p).astype(float))
        del p
        p = rng.random(args.test)
        truth = pd.Series((rng.random(args.test) < p).astype(int), name="churned")
        candidate = SimpleNamespace(path=work, meta=meta, engine="h2o", predictions=pd.DataFrame(
            {"probability_0": 1 - p, "probability_1": p}))
        start = _status("VmHWM:")
        print(f"{args.held:,} out-of-fold + {args.test:,} test rows; before: "
              f"{_status('VmRSS:'):.2f} GB resident, peak {start:.2f} GB")
        wall, cpu = time.perf_counter(), time.process_time()
        pooled = pool_rows([candidate], truth, meta)
        assert pooled is not None
        anchor = BEFORE.get((args.held, args.test))
        shown = (f"   before: {anchor['pool_peak_gb']:.2f} GB, "
                 f"{anchor['pool_cpu_seconds']:.1f} CPU s"
                 if anchor else "")
        print(f"pool_rows             peak {_status('VmHWM:'):5.2f} GB  "
              f"{time.perf_counter() - wall:6.1f} s  {time.process_time() - cpu:6.1f} CPU s"
              f"{shown}")
        wall, cpu = time.perf_counter(), time.process_time()
        metric_with_interval(pooled.truth, pooled.predictions["h2o"], meta, "auc",
                             samples=args.samples)
        print(f"metric_with_interval  peak {_status('VmHWM:'):5.2f} GB  "
              f"{time.perf_counter() - wall:6.1f} s  {time.process_time() - cpu:6.1f} CPU s"
              f"   ({args.samples} bootstrap samples)")


if __name__ == "__main__":
    main()
