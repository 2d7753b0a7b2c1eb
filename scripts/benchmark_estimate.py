"""Peak memory and time of selection's pooled estimate at evaluate's 10M-row shape.

Evaluate (and select) compare candidates on the rows every one of them scored out of sample
(H2O's out-of-fold predictions of every training row) pooled with the test rows
(``autokfp.modeling.estimate.pool_rows``), then bootstrap the metric over them
(``metric_with_interval``). At 10M rows that is 8M out-of-fold + 2M test rows. This script
builds one binary candidate's ``holdout.npz`` of that size and measures, each in a fresh
process (peak resident memory is per process: VmHWM, shown as growth over the process's
peak before the step), side by side:

    positions' lookup     the common positions and each one's place, as pool_rows finds
                          them (numpy), next to the anchor: the same lookup with Python sets
                          and dicts, as pool_rows did before f85c0e2 (3.18 GB at 8M rows)
    pool_rows             the whole pooling, then
    metric_with_interval  with --samples bootstrap samples (selection uses 200)

    python scripts/benchmark_estimate.py                       # 8M + 2M rows
    python scripts/benchmark_estimate.py --held 800000 --test 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _measure(step: Any) -> dict[str, float]:
    start, wall, cpu = _status("VmHWM:"), time.perf_counter(), time.process_time()
    step()
    return {"start_gb": start, "peak_gb": _status("VmHWM:"),
            "seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def lookup_python(positions: Any) -> Any:
    """The anchor: pool_rows' position lookup before f85c0e2, one candidate (its truth and
    its scores each looked up through a dict of every position, as that code did)."""
    import numpy as np

    common = set(positions.tolist())
    rows = np.array(sorted(common), dtype="int64")
    lookup = {int(p): i for i, p in enumerate(positions)}
    truth_at = [lookup[int(r)] for r in rows]
    where = {int(p): i for i, p in enumerate(positions)}
    scores_at = [where[int(r)] for r in rows]
    return rows, truth_at, scores_at


def lookup_numpy(positions: Any) -> Any:
    """pool_rows' position lookup now (np.unique, then ``_indices`` for truth and scores)."""
    import numpy as np

    from autokfp.modeling.estimate import _indices

    rows = np.unique(positions)
    return rows, _indices(positions, rows), _indices(positions, rows)


def part(name: str, held: int, test: int, samples: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np
    import pandas as pd

    from autokfp.modeling.estimate import metric_with_interval, pool_rows, save_holdout

    if name in ("lookup-python", "lookup-numpy"):
        positions = np.arange(held)
        step = lookup_python if name == "lookup-python" else lookup_numpy
        return {name: _measure(lambda: step(positions))}
    rng = np.random.default_rng(0)
    meta = {"task": "binary", "class_labels": ["0", "1"], "primary_metric": "auc",
            "target": "churned"}
    with tempfile.TemporaryDirectory(prefix="autokfp-estimate-") as work:
        engine = Path(work, "artifacts", "engine")
        engine.mkdir(parents=True)
        p = rng.random(held)
        save_holdout(engine, np.arange(held), np.c_[1 - p, p],
                     (rng.random(held) < p).astype(float))
        del p
        p = rng.random(test)
        truth = pd.Series((rng.random(test) < p).astype(int), name="churned")
        candidate = SimpleNamespace(path=work, meta=meta, engine="h2o", predictions=pd.DataFrame(
            {"probability_0": 1 - p, "probability_1": p}))
        pooled: list[Any] = []
        out = {"pool_rows": _measure(lambda: pooled.append(pool_rows([candidate], truth, meta)))}
        assert pooled[0] is not None
        out["metric_with_interval"] = _measure(lambda: metric_with_interval(
            pooled[0].truth, pooled[0].predictions["h2o"], meta, "auc", samples=samples))
    return out


def _line(label: str, figures: dict[str, float], note: str = "") -> str:
    growth = figures["peak_gb"] - figures["start_gb"]
    return (f"  {label:48s} peak {figures['peak_gb']:5.2f} GB (+{growth:4.2f})  "
            f"{figures['seconds']:6.1f} s  {figures['cpu']:6.1f} CPU s{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=8_000_000, help="out-of-fold rows")
    parser.add_argument("--test", type=int, default=2_000_000, help="test rows")
    parser.add_argument("--samples", type=int, default=3, help="bootstrap samples")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.part:
        print(json.dumps(part(args.part, args.held, args.test, args.samples)))
        return
    found: dict[str, dict[str, float]] = {}
    for name in ("lookup-python", "lookup-numpy", "pool"):
        done = subprocess.run([sys.executable, __file__, "--part", name, "--held",
                               str(args.held), "--test", str(args.test), "--samples",
                               str(args.samples)], capture_output=True, text=True, check=True)
        found.update(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.held:,} out-of-fold + {args.test:,} test rows, one binary candidate; "
          "each part in a fresh process")
    anchor, now = found["lookup-python"], found["lookup-numpy"]
    ratio = (now["peak_gb"] - now["start_gb"]) / max(anchor["peak_gb"] - anchor["start_gb"],
                                                     1e-9)
    print("positions' lookup:")
    print(_line("Python sets and dicts (before f85c0e2, anchor)", anchor))
    print(_line("numpy (now)", now, f"   growth {ratio:.2f}x the anchor's"))
    print(_line("pool_rows (now)", found["pool_rows"]))
    print(_line(f"metric_with_interval ({args.samples} samples)", found["metric_with_interval"]))


if __name__ == "__main__":
    main()
