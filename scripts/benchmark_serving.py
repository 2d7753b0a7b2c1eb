"""Benchmark the KServe predictor against a bare KServe server and the in-process floor.

For one packaged model (``--model-dir``, or the champion of the only model registered under
``--home``), this measures v1 requests of 1 and 100 rows at concurrency 1 and 16, for
``--seconds`` each, against:

* **ours**: ``python -m autokfp.serving`` (validation, metrics, prediction log on);
* **bare**: a plain ``kserve.Model`` that calls ``mlflow.pyfunc.load_model(...).predict(
  pd.DataFrame(instances))`` with no validation, metrics or logging, started the same way;
* **floor**: the model scored in this process, ``predict_records`` (1 row) and ``predict``
  (100 rows), no HTTP at all.

It prints requests/s, p50 and p99 per case, then PASS/FAIL for the targets (single-row p99
at concurrency 1 at most 20 ms; ours at least 50% of the bare server's throughput). It
always exits 0. ``--fixed-rate R`` instead sends R single-row requests per second to ours
for ``--seconds`` and reports errors (the target is none). Servers bind 127.0.0.1 only.

    python scripts/benchmark_serving.py --home /tmp/bench-home --seconds 5
    python scripts/benchmark_serving.py --model-dir path/to/model --fixed-rate 200 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SINGLE_ROW_P99_MS = 20.0
THROUGHPUT_RATIO = 0.5
CONCURRENCIES = (1, 16)
ROW_COUNTS = (1, 100)
READY_TIMEOUT = 120.0
MAX_REQUESTS_PER_CASE = 1_000_000  # a bound on every request loop, whatever --seconds says
MAX_IN_FLIGHT = 512  # fixed-rate mode: beyond this the server is not keeping up
SERVICE = "bench"


# ----------------------------------------------------------------------------- model input


def resolve_model_dir(args: argparse.Namespace) -> Path:
    """The model folder: ``--model-dir``, or the champion downloaded from ``--home``'s registry."""
    if args.model_dir:
        return Path(args.model_dir)
    from autokfp.edge.serving_commands import resolve_model
    from autokfp.settings import Settings

    settings = Settings.from_env(args.home)
    settings.export()
    name, version, local = resolve_model(None, settings)
    print(f"model: {name} v{version} (champion) from {settings.home}")
    return Path(local)


def example_records(model_dir: Path, count: int) -> list[dict[str, Any]]:
    """``count`` request rows, cycling through the model's own input example."""
    example = json.loads((model_dir / "input_example.json").read_text())
    if "dataframe_split" in example:
        example = example["dataframe_split"]
    columns, data = example["columns"], example["data"]
    # the example may hold NaN, which is not JSON: a missing value is null on the wire
    rows = [{c: None if isinstance(v, float) and math.isnan(v) else v
             for c, v in zip(columns, values)} for values in data]
    return [rows[i % len(rows)] for i in range(count)]


# ----------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A model server in a subprocess, on 127.0.0.1."""

    label: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} server exited with {self.process.returncode}; "
                                   f"see {self.log_path}:\n{_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.label} server not ready after {READY_TIMEOUT:.0f}s; "
                           f"see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ours_server(model_dir: Path, workdir: Path) -> Server:
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_NAME": SERVICE, "MODEL_VERSION": "1",
           "PORT": str(port), "HOST": "127.0.0.1",
           "AUTOKFP_ARTIFACT_ROOT": str(workdir / "artifacts")}  # prediction log on, as deployed
    command = [sys.executable, "-m", "autokfp.serving"]
    return Server("ours", command, env, port, workdir / "ours.log")


def bare_server(model_dir: Path, workdir: Path) -> Server:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", "--model-dir",
               str(model_dir), "--port", str(port)]
    return Server("bare", command, dict(os.environ), port, workdir / "bare.log")


def run_bare_server(model_dir: str, port: int) -> None:
    """The baseline: KServe around the MLflow pyfunc, nothing else (blocks)."""
    import kserve
    import mlflow.pyfunc
    import pandas as pd

    from autokfp.serving.predictor import _bind_host

    class BareModel(kserve.Model):
        def __init__(self, name: str):
            super().__init__(name)
            self.pyfunc: Any = None

        def load(self) -> bool:
            self.pyfunc = mlflow.pyfunc.load_model(model_dir)
            self.ready = True
            return True

        async def predict(self, payload: Any, headers: Any = None,
                          response_headers: Any = None) -> dict:
            predictions = self.pyfunc.predict(pd.DataFrame(payload["instances"]))
            return {"predictions": predictions.to_dict(orient="records")}

    model = BareModel(SERVICE)
    model.load()
    _bind_host("127.0.0.1")
    kserve.ModelServer(http_port=port, workers=1, enable_grpc=False).start([model])


# ----------------------------------------------------------------------------- load generation


@dataclass
class Result:
    case: str
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def _closed_loop(url: str, body: bytes, concurrency: int, seconds: float,
                       case: str) -> Result:
    import aiohttp

    result = Result(case)
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def worker(deadline: float, record: bool) -> None:
            while (time.perf_counter() < deadline
                   and result.ok + result.errors < MAX_REQUESTS_PER_CASE):
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    if record:
                        result.error(type(exc).__name__)
                    continue
                if not record:
                    continue
                if status == 200:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.error(f"HTTP {status}")

        # warm up the connections and the server's code paths, then measure
        warm = time.perf_counter() + min(1.0, seconds / 5)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


def measure_server(server: Server, records: dict[int, list[dict]], seconds: float) -> list[Result]:
    url = f"{server.url}/v1/models/{SERVICE}:predict"
    results = []
    for rows in ROW_COUNTS:
        body = json.dumps({"instances": records[rows]}).encode()
        for concurrency in CONCURRENCIES:
            case = f"{server.label} {rows:>3} row{'s' if rows > 1 else ' '} c={concurrency:<2}"
            result = asyncio.run(_closed_loop(url, body, concurrency, seconds, case))
            print(f"  {case}: {result.rate:8.1f} req/s  p99 {result.percentile(99):7.2f} ms"
                  f"  errors {result.errors}", flush=True)
            results.append(result)
    return results


def measure_in_process(model_dir: Path, records: dict[int, list[dict]],
                       seconds: float) -> list[Result]:
    import pandas as pd

    from autokfp.serving.predictor import load_package

    model = load_package(model_dir)
    frame = pd.DataFrame.from_records(records[100])
    cases = [("floor   1 row  predict_records", lambda: model.predict_records(records[1])),
             ("floor 100 rows predict", lambda: model.predict(None, frame))]
    results = []
    for case, call in cases:
        for _ in range(20):  # warm-up
            call()
        result = Result(case)
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline and result.ok < MAX_REQUESTS_PER_CASE:
            t0 = time.perf_counter()
            call()
            result.latencies.append(time.perf_counter() - t0)
            result.ok += 1
        result.elapsed = time.perf_counter() - started
        results.append(result)
    return results


async def _fixed_rate(url: str, body: bytes, rate: float, seconds: float) -> Result:
    import aiohttp

    result = Result(f"ours fixed {rate:g} req/s")
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    in_flight = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal in_flight
        in_flight += 1
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.error(f"HTTP {response.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            result.error(type(exc).__name__)
        finally:
            in_flight -= 1

    total = min(int(rate * seconds), MAX_REQUESTS_PER_CASE)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(100):  # warm-up (first-request and JIT costs), not measured
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                result.error("client: too many requests in flight (server not keeping up)")
                continue
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- report


def print_table(results: list[Result]) -> None:
    print(f"\n{'case':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in results:
        print(f"{r.case:<34} {r.rate:9.1f} {r.percentile(50):8.2f} {r.percentile(99):8.2f} "
              f"{r.errors:7d}")


def print_targets(ours: list[Result], bare: list[Result]) -> None:
    print("\ntargets")
    single = next(r for r in ours if r.case.startswith("ours   1 row  c=1 "))
    p99 = single.percentile(99)
    verdict = "PASS" if p99 <= SINGLE_ROW_P99_MS and single.errors == 0 else "FAIL"
    print(f"  {verdict}  single-row p99 at concurrency 1: {p99:.2f} ms "
          f"(target <= {SINGLE_ROW_P99_MS:g} ms)")
    for mine, base in zip(ours, bare):
        ratio = mine.rate / base.rate if base.rate else math.inf
        verdict = "PASS" if ratio >= THROUGHPUT_RATIO and mine.errors == 0 else "FAIL"
        case = mine.case.removeprefix("ours").strip()
        print(f"  {verdict}  throughput {case}: ours {mine.rate:.1f} / bare {base.rate:.1f} req/s "
              f"= {ratio:.0%} (target >= {THROUGHPUT_RATIO:.0%})")
    for r in ours + bare:
        if r.errors:
            print(f"  note: {r.case} had {r.errors} errors: {r.error_kinds}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir",
                        help="a packaged model folder (default: the champion under --home)")
    parser.add_argument("--home", help="AUTOKFP_HOME whose only registered model's champion to use")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time per case")
    parser.add_argument("--fixed-rate", type=float,
                        help="send this many single-row requests/s to ours")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        run_bare_server(args.model_dir, args.port)
        return 0
    if args.seconds <= 0 or (args.fixed_rate is not None and args.fixed_rate <= 0):
        parser.error("--seconds and --fixed-rate must be positive")

    model_dir = resolve_model_dir(args)
    records = {rows: example_records(model_dir, rows) for rows in ROW_COUNTS}
    workdir = Path(tempfile.mkdtemp(prefix="autokfp-bench-"))
    print(f"model folder {model_dir}; server logs in {workdir}", flush=True)
    try:
        if args.fixed_rate is not None:
            return run_fixed_rate(model_dir, workdir, records, args.fixed_rate, args.seconds)
        results: dict[str, list[Result]] = {}
        for label, make in (("ours", ours_server), ("bare", bare_server)):
            server = make(model_dir, workdir)
            print(f"starting {label} server on {server.url}", flush=True)
            server.start()
            try:
                results[label] = measure_server(server, records, args.seconds)
            finally:
                server.stop()
        print("in-process floor", flush=True)
        floor = measure_in_process(model_dir, records, args.seconds)
        print_table(results["ours"] + results["bare"] + floor)
        print_targets(results["ours"], results["bare"])
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not gate
        print(f"benchmark failed: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_fixed_rate(model_dir: Path, workdir: Path, records: dict[int, list[dict]], rate: float,
                   seconds: float) -> int:
    server = ours_server(model_dir, workdir)
    print(f"starting ours server on {server.url}", flush=True)
    server.start()
    try:
        url = f"{server.url}/v1/models/{SERVICE}:predict"
        body = json.dumps({"instances": records[1]}).encode()
        result = asyncio.run(_fixed_rate(url, body, rate, seconds))
    finally:
        server.stop()
    sent = result.ok + result.errors
    print_table([result])
    print(f"\nsent {sent} in {result.elapsed:.1f}s ({sent / result.elapsed:.1f} req/s offered)")
    verdict = "PASS" if result.errors == 0 else "FAIL"
    print(f"  {verdict}  errors at {rate:g} req/s: {result.errors} (target 0) "
          f"{result.error_kinds or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
