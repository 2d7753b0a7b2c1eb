"""How fast the predictor's readiness probe answers while hostile requests run.

The target (issue 14): health probes answer within 1 s under any request mix. Starts
``python -m autokfp.serving`` on 127.0.0.1 for one packaged model (``--model-dir``, or the
champion of the only model registered under ``--home``), times ``--idle`` probes on an idle
server, then probes every 0.1 s for ``--seconds`` while the hostile load of the test suite
(``tests/serving/hostile/load.py``: Kernel SHAP explanations at the server's budget,
10,000-row requests, a 4 MB date value, 80-row and single-row requests, from five senders in
their own process) runs. Each probe is a new connection, as the kubelet sends it. Prints
the probe latencies (p50, p99, max) idle and under load side by side with the target, and
the status counts of the load. It always exits 0 (a benchmark reports, it does not gate;
the test suite checks that probes never wait for the work, which cannot flake).

    python scripts/benchmark_probes.py --home /tmp/bench-home
    python scripts/benchmark_probes.py --model-dir path/to/model --seconds 60
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from benchmark_serving import (  # noqa: E402
    SERVICE,
    example_records,
    ours_server,
    resolve_model_dir,
)

TARGET_SECONDS = 1.0


def probe_seconds(url: str) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=30) as response:
            ok = response.status == 200
    except OSError:
        ok = False
    elapsed = time.perf_counter() - started
    return elapsed if ok else math.inf


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def row(label: str, values: list[float]) -> str:
    failed = sum(1 for v in values if math.isinf(v))
    finite = [v for v in values if not math.isinf(v)] or [math.nan]
    return (f"{label:<22}{len(values):>7}{percentile(finite, 50) * 1e3:>10.1f}"
            f"{percentile(finite, 99) * 1e3:>10.1f}{max(finite) * 1e3:>10.1f}{failed:>8}"
            f"{TARGET_SECONDS * 1e3:>10.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--home", help="AUTOKFP_HOME whose only registered model's champion to use")
    parser.add_argument("--seconds", type=float, default=30.0, help="hostile load duration")
    parser.add_argument("--idle", type=int, default=50, help="probes on the idle server")
    args = parser.parse_args(argv)

    model_dir = resolve_model_dir(args)
    plan = json.loads((model_dir / "artifacts" / "plan.json").read_text())
    rows = example_records(model_dir, 50)
    date_column = (plan.get("datetime") or list(rows[0]))[0]
    with tempfile.TemporaryDirectory(prefix="autokfp-probes-") as tmp:
        workdir = Path(tmp)
        rows_path = workdir / "rows.json"
        rows_path.write_text(json.dumps([{**r, "__date_column__": date_column} for r in rows]))
        server = ours_server(model_dir, workdir)
        server.start()
        try:
            idle = [probe_seconds(server.url) for _ in range(args.idle)]
            load = subprocess.Popen([sys.executable, "-m", "tests.serving.hostile.load",
                                     server.url, str(rows_path), str(args.seconds), SERVICE],
                                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
            loaded: list[float] = []
            time.sleep(min(2.0, args.seconds / 4))  # the senders fill the server's queue
            deadline = time.monotonic() + args.seconds - min(2.0, args.seconds / 4)
            while time.monotonic() < deadline:
                loaded.append(probe_seconds(server.url))
                time.sleep(0.1)
            output, _ = load.communicate(timeout=args.seconds + 300)
        finally:
            server.stop()
    print(f"{'readiness probe':<22}{'probes':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"{'failed':>8}{'target':>10}")
    print(row("idle", idle))
    print(row("under hostile load", loaded))
    worst = max(loaded) if loaded else math.inf
    verdict = "met" if worst < TARGET_SECONDS else "NOT met"
    print(f"target (every probe under load < {TARGET_SECONDS:g} s): {verdict}")
    print(f"hostile load statuses: {output.strip()}")
    statuses = json.loads(output or "{}")
    if not statuses.get("200") or any(not s.isdigit() or int(s) >= 500 for s in statuses):
        print("warning: the load did not run as intended (no 200 answers, a 5xx or a client "
              "error): the figures under load do not measure the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
