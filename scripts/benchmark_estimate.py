"""Peak memory and time of selection's pooled estimate, at 100k, 1M and 10M pooled rows.

Evaluate (and select) compare candidates on the rows every one of them scored out of sample
(H2O's out-of-fold predictions of every training row) pooled with the test rows
(``autokfp.modeling.estimate.pool_rows``), then bootstrap the metric over them
(``metric_with_interval``). At the 10M-row table that is 8M out-of-fold + 2M test rows. For
each ``--sizes`` (pooled rows: 80% out-of-fold, 20% test, as the 80/20 split gives) this
script builds one binary candidate's ``holdout.npz`` and measures, each in a fresh process
(peak resident memory is per process: VmHWM, shown as growth over the process's peak
before the part), side by side with anchors measured in the same run:

    positions' lookup     the common positions and each one's place, as pool_rows finds them
                          now (each candidate's positions sorted once, ``_Lookup``), beside two
                          anchors: Python sets and dicts (pool_rows before f85c0e2) and
                          f85c0e2's numpy lookup (``np.unique``, then an argsort of the
                          positions in each ``_indices`` call: truth and scores)
    pool_rows             the whole pooling, now
    interval              ``metric_with_interval`` (AUC) with ``--samples`` bootstrap samples:
                          now (the rows weighted by how often each sample draws them, the
                          scores sorted once: ``modeling/bootstrap.py``), beside the anchor,
                          the loop it replaced (the drawn rows indexed out and the AUC
                          ranked again for each sample), on the same pooled rows

    python scripts/benchmark_estimate.py                          # 100k, 1M, 10M pooled rows
    python scripts/benchmark_estimate.py --sizes 100000 1000000 --samples 50
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
    """Anchor: pool_rows' position lookup before f85c0e2, one candidate (its truth and its
    scores each looked up through a dict of every position, as that code did)."""
    import numpy as np

    common = set(positions.tolist())
    rows = np.array(sorted(common), dtype="int64")
    lookup = {int(p): i for i, p in enumerate(positions)}
    truth_at = [lookup[int(r)] for r in rows]
    where = {int(p): i for i, p in enumerate(positions)}
    scores_at = [where[int(r)] for r in rows]
    return rows, truth_at, scores_at


def _indices_f85c0e2(positions: Any, rows: Any) -> Any:
    import numpy as np

    order = np.argsort(positions, kind="stable")
    return order[np.searchsorted(positions, rows, side="right", sorter=order) - 1]


def lookup_f85c0e2(positions: Any) -> Any:
    """Anchor: f85c0e2's numpy lookup (np.unique, then ``_indices`` for truth and scores,
    each sorting the positions again)."""
    import numpy as np

    rows = np.unique(positions)
    return rows, _indices_f85c0e2(positions, rows), _indices_f85c0e2(positions, rows)


def lookup_now(positions: Any) -> Any:
    """pool_rows' lookup now: the positions sorted once, for the distinct positions and
    for the places (truth and scores share them)."""
    from autokfp.modeling.estimate import _Lookup

    lookup = _Lookup(positions)
    rows = lookup.distinct
    return rows, lookup.places(rows)


def interval_before(truth: Any, predictions: Any, meta: dict[str, Any], metric: str,
                    samples: int, seed: int = 0) -> dict[str, Any]:
    """Anchor: metric_with_interval's bootstrap before modeling/bootstrap.py (the loop as it
    was: each sample's rows indexed out, one-class check by np.unique, the AUC ranked)."""
    import numpy as np

    from autokfp.modeling.evaluation import encode_labels, metric_value, probability_matrix

    task = meta["task"]
    codes = encode_labels(truth, meta)
    keep = codes >= 0
    codes, scores = codes[keep], probability_matrix(predictions, meta)[keep]
    value = metric_value(metric, codes, scores, task)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(codes), len(codes))
        if len(np.unique(codes[idx])) < 2:
            continue
        try:
            values.append(metric_value(metric, codes[idx], scores[idx], task))
        except ValueError:
            continue
    low, high = (np.quantile(values, [0.05, 0.95]).tolist() if values else (None, None))
    return {"value": float(value), "ci_low": low, "ci_high": high, "rows": int(len(codes))}


LOOKUPS = {"lookup-python": lookup_python, "lookup-f85c0e2": lookup_f85c0e2,
           "lookup-now": lookup_now}


def part(name: str, held: int, test: int, samples: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np
    import pandas as pd

    from autokfp.modeling.estimate import metric_with_interval, pool_rows, save_holdout

    if name in LOOKUPS:
        positions = np.arange(held)
        return {name: _measure(lambda: LOOKUPS[name](positions))}
    rng = np.random.default_rng(0)
    meta = {"task": "binary", "class_labels": ["0", "1"], "primary_metric": "auc",
            "target": "churned"}
    with tempfile.TemporaryDirectory(prefix="autokfp-estimate-") as work:
        engine = Path(work, "artifacts", "engine")
        engine.mkdir(parents=True)
        # scores rounded to 4 places: ties, as a model's probabilities have
        p = np.round(rng.random(held), 4)
        save_holdout(engine, np.arange(held), np.c_[1 - p, p],
                     (rng.random(held) < p).astype(float))
        del p
        p = np.round(rng.random(test), 4)
        truth = pd.Series((rng.random(test) < p).astype(int), name="churned")
        candidate = SimpleNamespace(path=work, meta=meta, engine="h2o", predictions=pd.DataFrame(
            {"probability_0": 1 - p, "probability_1": p}))
        pooled: list[Any] = []
        out = {"pool_rows": _measure(lambda: pooled.append(pool_rows([candidate], truth, meta)))}
        assert pooled[0] is not None
        interval = metric_with_interval if name == "interval-now" else interval_before
        import scipy.stats  # noqa: F401 - imported before the clock starts, as in a step

        import autokfp.modeling.bootstrap  # noqa: F401
        found: list[dict[str, Any]] = []
        out[name] = _measure(lambda: found.append(interval(
            pooled[0].truth, pooled[0].predictions["h2o"], meta, "auc", samples=samples)))
        out[name]["interval"] = [found[0]["ci_low"], found[0]["ci_high"]]
    return out


def _line(label: str, figures: dict[str, Any], note: str = "") -> str:
    growth = figures["peak_gb"] - figures["start_gb"]
    return (f"  {label:50s} peak {figures['peak_gb']:5.2f} GB (+{growth:4.2f})  "
            f"{figures['seconds']:7.1f} s  {figures['cpu']:7.1f} CPU s{note}")


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000],
                        help="pooled rows (80%% out-of-fold, 20%% test)")
    parser.add_argument("--samples", type=int, default=20,
                        help="bootstrap samples (selection uses 200; the time is per sample)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one measurement, in a child
    parser.add_argument("--held", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--test", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(part(args.part, args.held, args.test, args.samples)))
        return
    print(f"one binary candidate, AUC; each part in a fresh process; {os.cpu_count()} cores")
    per_sample: dict[int, tuple[float, float]] = {}
    for size in args.sizes:
        held, test = size * 4 // 5, size - size * 4 // 5
        found: dict[str, dict[str, Any]] = {}
        load = os.getloadavg()[0]
        for name in (*LOOKUPS, "interval-before", "interval-now"):
            done = subprocess.run([sys.executable, __file__, "--part", name, "--held",
                                   str(held), "--test", str(test), "--samples",
                                   str(args.samples)], capture_output=True, text=True, check=True)
            found.update(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\n{size:,} pooled rows ({held:,} out-of-fold + {test:,} test), load {load:.1f}")
        print(" positions' lookup:")
        print(_line("Python sets and dicts (before f85c0e2, anchor)", found["lookup-python"]))
        print(_line("numpy, argsort per _indices call (f85c0e2, anchor)",
                    found["lookup-f85c0e2"]))
        print(_line("numpy, positions sorted once (now)", found["lookup-now"]))
        print(_line("pool_rows (now)", found["pool_rows"]))
        before, now = found["interval-before"], found["interval-now"]
        print(f" metric_with_interval, {args.samples} samples:")
        print(_line("rows drawn out, AUC ranked per sample (anchor)", before,
                    f"   90% interval {_bounds(before)}"))
        print(_line("rows weighted, scores sorted once (now)", now,
                    f"   90% interval {_bounds(now)}"))
        per_sample[size] = (before["cpu"] / args.samples, now["cpu"] / args.samples)
    print("\nCPU s of metric_with_interval per bootstrap sample (anchor / now; the one-off "
          "sort and the metric on all rows included), and per million rows:")
    for size, (old, new) in per_sample.items():
        print(f"  {size:>11,} rows: {old:7.3f} / {new:7.3f} s   "
              f"({old / size * 1e6:6.3f} / {new / size * 1e6:6.3f} s per million rows)")


def _bounds(figures: dict[str, Any]) -> str:
    low, high = figures["interval"]
    return "none" if low is None else f"{low:.6f} - {high:.6f}"


if __name__ == "__main__":
    main()
