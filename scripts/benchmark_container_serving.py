"""Single-row latency of one model: the serving image (as KServe runs it) vs the host.

Serves the same model folder twice, both servers up at once, and sends the same single-row
v1 requests to each, one at a time, in ``--rounds`` rounds that alternate which side goes
first (so a machine whose load changes during the run weighs on both sides alike):

* **container**: the serving image started with the ServingRuntime's args
  (``--model_name --model_dir=/mnt/models --http_port``), the folder mounted read-only at
  ``/mnt/models``, host networking, a random UID in group 0;
* **host**: ``python -m autokfp.serving`` from this environment: the server ``autokfp serve``
  runs once it has fetched the model from the registry.

Prediction logging is off on both sides (it is asynchronous and would only add noise). It
prints p50/p95/p99 per side and their ratio, and the load average (``/proc/loadavg``) at
each round. Always exits 0 unless a server fails to start.

    AUTOKFP_BOX_KEEP_CHAMPION=/tmp/champion make test-cluster   # leaves a served champion
    python scripts/benchmark_container_serving.py --model-dir /tmp/champion \
        --image autokfp.test/autokfp-serving:0.1.0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

READY_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} was not ready within {READY_TIMEOUT:.0f} s")


def post(url: str, row: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps({"instances": [row]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def measure(url: str, rows: list[dict]) -> list[float]:
    latencies = []
    for row in rows:
        started = time.perf_counter()
        post(url, row)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def summary(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--image", required=True, help="the serving image")
    parser.add_argument("--service", default=None, help="model name (default: box.json or 'bench')")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds, alternating which side goes first (default 10)")
    args = parser.parse_args()

    from autokfp.examples.churn import generate_churn

    model_dir = args.model_dir.resolve()
    box = model_dir / "box.json"
    service = args.service or (json.loads(box.read_text())["service"] if box.exists() else "bench")
    frame = generate_churn(args.requests, seed=11).drop(columns=["churned"])
    rows = json.loads(frame.to_json(orient="records", date_format="iso"))
    results: dict[str, list[float]] = {"container": [], "host": []}

    # the container, as the ServingRuntime starts it
    port = free_port()
    name = f"autokfp-bench-{uuid.uuid4().hex[:8]}"
    user = f"{random.randint(1_000_100_000, 1_000_900_000)}:0"
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", "--user", user,
                    "-e", "AUTOKFP_PREDICTION_LOG=off", "-v", f"{model_dir}:/mnt/models:ro",
                    args.image, f"--model_name={service}", "--model_dir=/mnt/models",
                    f"--http_port={port}"], check=True, capture_output=True)
    process = None
    try:
        urls = {"container": f"http://127.0.0.1:{port}"}
        wait_ready(f"{urls['container']}/v2/models/{service}/ready")
        # the host: what `autokfp serve` runs
        port = free_port()
        env = {**os.environ, "AUTOKFP_PREDICTION_LOG": "off"}
        process = subprocess.Popen([sys.executable, "-m", "autokfp.serving",
                                    f"--model_name={service}", f"--model_dir={model_dir}",
                                    f"--http_port={port}"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        urls["host"] = f"http://127.0.0.1:{port}"
        wait_ready(f"{urls['host']}/v2/models/{service}/ready", process)
        predict = {side: f"{url}/v1/models/{service}:predict" for side, url in urls.items()}
        for side in predict:
            for row in rows[:args.warmup]:
                post(predict[side], row)
        per_round = max(1, len(rows) // args.rounds)
        for number in range(args.rounds):
            chunk = rows[number * per_round:(number + 1) * per_round]
            order = ["container", "host"] if number % 2 == 0 else ["host", "container"]
            round_p50 = {}
            for side in order:
                latencies = measure(predict[side], chunk)
                results[side] += latencies
                round_p50[side] = float(np.percentile(latencies, 50))
            print(f"round {number + 1}/{args.rounds} ({order[0]} first): p50 container "
                  f"{round_p50['container']:.2f} ms, host {round_p50['host']:.2f} ms; "
                  f"load average {load_average()}", flush=True)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    print(f"single-row v1 latency, {len(results['host'])} sequential requests a side in "
          f"{args.rounds} alternating rounds after {args.warmup} warm-up ({service}, {model_dir})")
    print(f"{'':10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    stats = {side: summary(values) for side, values in results.items()}
    for side, figures in stats.items():
        print(f"{side:10} " + " ".join(f"{figures[k]:8.2f}" for k in ("p50", "p95", "p99", "mean")))
    ratios = ", ".join(f"{k} {stats['container'][k] / stats['host'][k]:.2f}x"
                       for k in ("p50", "p95", "p99"))
    print(f"container / host: {ratios} "
          "(anchor: README serving benchmark, single-row p99 at c=1 11.0 ms on the host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
