"""Benchmark the autokfp predictor against a bare KServe server, side by side in one run.

For one packaged model (``--model-dir``, or the champion of the only model registered under
``--home``), four servers run on 127.0.0.1, each in its own process, with KServe's defaults:

* **ours**: ``python -m autokfp.serving`` as the local target runs it (validation, metrics,
  the predictor's own prediction log);
* **ours-nolog**: the same with ``AUTOKFP_PREDICTION_LOG=off``, as a cluster runs it by
  default (``deploy.payload_log: kserve``: KServe's agent captures requests outside the
  predictor's process);
* **ours-kserve**: ``ours-nolog`` with ``AUTOKFP_V1_ROUTE=kserve``: v1 predictions through
  KServe's own FastAPI route, ``DataPlane`` and ``Model.__call__`` instead of the
  predictor's direct route (``autokfp.serving.v1_route``), so the run shows what that
  route saves next to what autokfp's own work costs;
* **bare**: a plain ``kserve.Model`` answering from a trivial model (a logistic function of
  one input column, computed in Python), so the difference is what autokfp adds: the
  request checks, feature engineering, the engine call (e.g. the H2O MOJO through JPype),
  metrics, the prediction log and the answer's JSON.

Single-row v1 requests go to each server in turn with keep-alive at concurrency 1 and 16,
``--seconds`` at a time, for ``--rounds`` rounds (the order rotates, so a noisy
neighbour hurts both alike). The slices are short by default (1 s, 12 rounds): on a shared
machine the load moves within seconds, and at concurrency 1, where each request waits for a
core twice, 5 s slices measured the neighbours more than the servers (docs/serving.md,
"Issue 13 audited"). Reported per server and concurrency: p50, p99, the server
process's CPU time per request (from /proc), throughput, its garbage collections per
generation (its /metrics) and the machine's load average while measured, then the ratios against the
targets: p99 <= 1.25x bare, CPU per request <= 1.5x bare, throughput >= 0.9x bare. Then
``--fixed-rate`` requests/s (100) for ``--fixed-seconds`` (60) to ours: errors must be 0.
The in-process floor (``predict_records`` on one row) is printed for reference. It always
exits 0 (a benchmark reports, it does not gate).

    python scripts/benchmark_serving.py --home /tmp/bench-home
    python scripts/benchmark_serving.py --model-dir path/to/model --seconds 5 --rounds 2
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

P99_RATIO = 1.25
CPU_RATIO = 1.5
THROUGHPUT_RATIO = 0.9
CONCURRENCIES = (1, 16)
READY_TIMEOUT = 120.0
MAX_REQUESTS_PER_CASE = 1_000_000  # a bound on every request loop, whatever --seconds says
MAX_IN_FLIGHT = 512  # fixed-rate mode: beyond this the server is not keeping up
SERVICE = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def gc_collections(self) -> list[int]:
        """The server's garbage collections so far, per generation (its /metrics)."""
        counts = [0, 0, 0]
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith('python_gc_collections_total{generation="'):
                        generation = int(line.split('"')[1])
                        counts[generation] = int(float(line.rsplit(" ", 1)[1]))
        except (OSError, ValueError, IndexError):
            pass
        return counts

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


def ours_server(model_dir: Path, workdir: Path, log: bool = True,
                kserve_route: bool = False) -> Server:
    port = free_port()
    label = "ours-kserve" if kserve_route else "ours" if log else "ours-nolog"
    env = {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_NAME": SERVICE, "MODEL_VERSION": "1",
           "PORT": str(port), "HOST": "127.0.0.1",
           "AUTOKFP_ARTIFACT_ROOT": str(workdir / f"artifacts-{label}")}
    env.pop("AUTOKFP_PREDICTION_LOG", None)
    if not log:  # a cluster's default: KServe's payload logger captures requests
        env["AUTOKFP_PREDICTION_LOG"] = "off"
    env.pop("AUTOKFP_V1_ROUTE", None)
    if kserve_route:
        env["AUTOKFP_V1_ROUTE"] = "kserve"
    command = [sys.executable, "-m", "autokfp.serving"]
    return Server(label, command, env, port, workdir / f"{label}.log")


def bare_server(model_dir: Path, workdir: Path) -> Server:
    port = free_port()
    column = next(iter(example_records(model_dir, 1)[0]))
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", "--port", str(port),
               "--bare-column", column]
    return Server("bare", command, dict(os.environ), port, workdir / "bare.log")


def run_bare_server(port: int, column: str) -> None:
    """The baseline: KServe around a trivial model (a logistic function of one column)."""
    import kserve

    from autokfp.serving.predictor import _bind_host

    class BareModel(kserve.Model):
        def load(self) -> bool:
            self.ready = True
            return True

        async def predict(self, payload: Any, headers: Any = None,
                          response_headers: Any = None) -> dict:
            answers = []
            for instance in payload["instances"]:
                value = instance.get(column)
                x = float(value) if isinstance(value, (int, float)) else 0.0
                p = 1.0 / (1.0 + math.exp(-(0.02 * x - 1.0)))
                answers.append({"prediction": int(p >= 0.5), "probability_0": 1.0 - p,
                                "probability_1": p})
            return {"predictions": answers, "model_version": "1"}

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
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # 1-min load average, start and end
    gc: list[int] = field(default_factory=lambda: [0, 0, 0])  # collections per generation

    @property
    def load(self) -> str:
        """The machine's 1-minute load average over the measurement, as a range."""
        if not self.loads:
            return "?"
        low, high = min(self.loads), max(self.loads)
        return f"{low:.1f}" if round(low, 1) == round(high, 1) else f"{low:.1f}-{high:.1f}"

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        done = self.ok + self.errors
        return 1000.0 * self.cpu / done if done else math.nan

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def add(self, other: Result) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.cpu += other.cpu
        self.latencies += other.latencies
        self.loads += other.loads
        self.gc = [a + b for a, b in zip(self.gc, other.gc)]
        for kind, count in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count


async def _closed_loop(url: str, body: bytes, concurrency: int, seconds: float,
                       case: str, server: Server) -> Result:
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
        collections = server.gc_collections()
        cpu = server.cpu_seconds()
        result.loads.append(os.getloadavg()[0])
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
        result.cpu = server.cpu_seconds() - cpu
        result.loads.append(os.getloadavg()[0])
        result.gc = [b - a for a, b in zip(collections, server.gc_collections())]
    return result


def measure(servers: list[Server], body: bytes, seconds: float, rounds: int
            ) -> dict[tuple[str, int], Result]:
    totals: dict[tuple[str, int], Result] = {}
    for round_number in range(rounds):
        for concurrency in CONCURRENCIES:
            # rotate, so in every len(servers) rounds each server is measured once in each
            # position (first, when the load may be higher or lower, ...); then reversed
            order = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
            if (round_number // len(servers)) % 2:
                order.reverse()
            for server in order:
                case = f"{server.label} c={concurrency}"
                url = f"{server.url}/v1/models/{SERVICE}:predict"
                result = asyncio.run(_closed_loop(url, body, concurrency, seconds, case, server))
                print(f"  round {round_number + 1} {case:<16} {result.rate:8.1f} req/s  "
                      f"p50 {result.percentile(50):6.2f} ms  p99 {result.percentile(99):6.2f} ms  "
                      f"cpu {result.cpu_ms_per_request:5.2f} ms/req  errors {result.errors}  "
                      f"gc {'/'.join(map(str, result.gc))}  load {result.load}", flush=True)
                totals.setdefault((server.label, concurrency), Result(case)).add(result)
    return totals


def measure_floor(model_dir: Path, record: dict[str, Any], seconds: float) -> Result:
    from autokfp.serving.predictor import load_package

    model = load_package(model_dir)
    call = getattr(model, "predict_answers", None) or model.predict_records
    for _ in range(200):  # warm-up
        call([dict(record)])
    result = Result("floor: in-process, one row")
    started = time.perf_counter()
    cpu = time.process_time()
    while time.perf_counter() - started < seconds and result.ok < MAX_REQUESTS_PER_CASE:
        t0 = time.perf_counter()
        call([dict(record)])
        result.latencies.append(time.perf_counter() - t0)
        result.ok += 1
    result.elapsed = time.perf_counter() - started
    result.cpu = time.process_time() - cpu
    return result


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
        tasks = []
        result.loads.append(os.getloadavg()[0])
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
        result.loads.append(os.getloadavg()[0])
    return result


# ----------------------------------------------------------------------------- report


def report(totals: dict[tuple[str, int], Result], floor: Result | None) -> None:
    print(f"\n{'server':<11} {'c':>3} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu ms/req':>11} {'req/s':>9} {'errors':>7} {'gc 0/1/2':>12}  load")
    for (label, concurrency), r in sorted(totals.items(), key=lambda kv: (kv[0][1], kv[0][0] == "bare",
                                                                         kv[0][0])):
        print(f"{label:<11} {concurrency:>3} {r.ok + r.errors:>9} {r.percentile(50):8.2f} "
              f"{r.percentile(99):8.2f} {r.cpu_ms_per_request:11.2f} {r.rate:9.1f} {r.errors:7d}"
              f" {'/'.join(map(str, r.gc)):>12}  {r.load}")
    if floor is not None:
        print(f"floor: in-process one row: p50 {floor.percentile(50):.3f} ms, p99 "
              f"{floor.percentile(99):.3f} ms, cpu {floor.cpu_ms_per_request:.3f} ms/req")
    labels = sorted({label for label, _ in totals if label != "bare"})
    print("\ntargets (ours / bare, in the same run)")
    for label, concurrency in ((label, c) for label in labels for c in CONCURRENCIES):
        ours, bare = totals[(label, concurrency)], totals[("bare", concurrency)]
        checks = [
            ("p99", ours.percentile(99) / bare.percentile(99), P99_RATIO, "<="),
            ("cpu per request", ours.cpu_ms_per_request / bare.cpu_ms_per_request, CPU_RATIO, "<="),
            ("throughput", ours.rate / bare.rate if bare.rate else math.inf, THROUGHPUT_RATIO, ">="),
        ]
        for name, ratio, target, sense in checks:
            passed = ratio <= target if sense == "<=" else ratio >= target
            passed = passed and ours.errors == 0
            print(f"  {'PASS' if passed else 'FAIL'}  {label:<11} c={concurrency:<2} {name:<16} "
                  f"{ratio:5.2f}x  (target {sense} {target:g}x)  load {ours.load} / {bare.load}")
    for r in totals.values():
        if r.errors:
            print(f"  note: {r.case} had {r.errors} errors: {r.error_kinds}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir",
                        help="a packaged model folder (default: the champion under --home)")
    parser.add_argument("--home", help="AUTOKFP_HOME whose only registered model's champion to use")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="measuring time per case and round (one slice)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of every case")
    parser.add_argument("--fixed-rate", type=float, default=100.0,
                        help="single-row requests/s sent to ours at the end (0: skip)")
    parser.add_argument("--fixed-seconds", type=float, default=60.0)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-column", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        run_bare_server(args.port, args.bare_column)
        return 0
    if args.seconds <= 0 or args.rounds <= 0 or args.fixed_rate < 0:
        parser.error("--seconds and --rounds must be positive, --fixed-rate not negative")

    model_dir = resolve_model_dir(args)
    record = example_records(model_dir, 1)[0]
    body = json.dumps({"instances": [record]}).encode()
    workdir = Path(tempfile.mkdtemp(prefix="autokfp-bench-"))
    print(f"model folder {model_dir}; server logs in {workdir}", flush=True)
    servers = [ours_server(model_dir, workdir), ours_server(model_dir, workdir, log=False),
               ours_server(model_dir, workdir, log=False, kserve_route=True),
               bare_server(model_dir, workdir)]
    try:
        for server in servers:
            print(f"starting {server.label} server on {server.url}", flush=True)
            server.start()
        totals = measure(servers, body, args.seconds, args.rounds)
        fixed = None
        if args.fixed_rate:
            print(f"ours at {args.fixed_rate:g} req/s for {args.fixed_seconds:g} s", flush=True)
            url = f"{servers[0].url}/v1/models/{SERVICE}:predict"
            fixed = asyncio.run(_fixed_rate(url, body, args.fixed_rate, args.fixed_seconds))
        for server in servers:
            server.stop()
        floor = measure_floor(model_dir, record, min(args.seconds, 5.0))
        report(totals, floor)
        if fixed is not None:
            sent = fixed.ok + fixed.errors
            print(f"  {'PASS' if fixed.errors == 0 else 'FAIL'}  {sent} requests at "
                  f"{args.fixed_rate:g} req/s for {fixed.elapsed:.0f} s: {fixed.errors} errors "
                  f"(target 0), p50 {fixed.percentile(50):.2f} ms, p99 "
                  f"{fixed.percentile(99):.2f} ms, load {fixed.load} {fixed.error_kinds or ''}")
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not gate
        print(f"benchmark failed: {exc}", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
