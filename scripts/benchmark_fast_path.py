"""Time the row-wise fast path of a packaged model against its batch path, in process.

For one packaged model (``--model-dir``, or the champion of the only model registered under
``--home``; H2O or AutoKeras alike), this scores ``--records`` rows of the model's input
example one at a time with ``predict_records`` and all at once with ``predict``, and prints
per-row p50/p99 next to the anchors: the serving target (single-row p99 at most 20 ms, see
scripts/benchmark_serving.py) and the bound a unit test used to assert (mean under 0.5 s
per row). It always exits 0. HTTP is measured by scripts/benchmark_serving.py.

    python scripts/benchmark_fast_path.py --model-dir path/to/model
    python scripts/benchmark_fast_path.py --home /tmp/bench-home --records 200
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the sibling script's model resolution (the registry's champion through
# autokfp.edge.serving_commands.resolve_model) and request rows
from benchmark_serving import example_records, resolve_model_dir  # noqa: E402

SINGLE_ROW_P99_MS = 20.0
OLD_TEST_MEAN_MS = 500.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a packaged model folder (MLmodel inside)")
    parser.add_argument("--home", help="AUTOKFP_HOME whose only registered model's champion to use")
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args(argv)
    if not args.model_dir and not args.home:
        parser.error("give --model-dir, or --home of a run that registered a model "
                     "(e.g. after `autokfp demo`)")

    import pandas as pd

    from autokfp.serving.predictor import load_package

    model_dir = resolve_model_dir(args)
    model = load_package(model_dir)
    records = example_records(model_dir, args.records)
    frame = pd.DataFrame.from_records(records)
    for record in records[:10]:  # warm-up
        model.predict_records([record])
    latencies = []
    for record in records:
        started = time.perf_counter()
        model.predict_records([record])
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    model.predict(None, frame)
    batch_ms = (time.perf_counter() - started) * 1000
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
    mean = statistics.fmean(latencies)
    print(f"{'case':<32} {'figure':>10}  anchor")
    print(f"{'1 row  predict_records p50':<32} {statistics.median(latencies):>8.2f} ms  -")
    print(f"{'1 row  predict_records p99':<32} {p99:>8.2f} ms  <= {SINGLE_ROW_P99_MS:.0f} ms "
          f"({'PASS' if p99 <= SINGLE_ROW_P99_MS else 'FAIL'})")
    print(f"{'1 row  predict_records mean':<32} {mean:>8.2f} ms  < {OLD_TEST_MEAN_MS:.0f} ms "
          f"(old unit test; {'PASS' if mean < OLD_TEST_MEAN_MS else 'FAIL'})")
    print(f"{f'{len(records)} rows predict, per row':<32} {batch_ms / len(records):>8.2f} ms  -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
