"""Soak the predictor: steady mixed traffic for minutes, reporting errors, p99 and memory.

Starts ``python -m autokfp.serving`` on 127.0.0.1 for one packaged model (``--model-dir``,
or the champion of the only model registered under ``--home``) with the prediction log on,
as deployed (or uses ``--url`` of a running server, with ``--pid`` for its memory), then
sends ``--rate`` requests per second for ``--minutes`` (10) on an open loop: good
single-row and 100-row v1 requests, v2 requests, and a share (``--hostile``, 10%) of
hostile ones (malformed JSON, wrong types, megabyte values, bad v2 shapes, bad explain
parameters, repository and unknown-version routes).

An error is a good request not answered 200, a hostile one not answered 4xx, any 5xx, or
a failed connection. Every 30 s, and at the end, it prints the requests, errors, p50/p99
of good requests and the server's resident memory; the final report gives the memory
growth from the first minute to the end. It always exits 0.

    python scripts/soak_serving.py --home /tmp/bench-home --minutes 10
    python scripts/soak_serving.py --model-dir path/to/model --minutes 1 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_serving import (  # noqa: E402 - the sibling script's server plumbing
    SERVICE,
    example_records,
    ours_server,
    resolve_model_dir,
)

REPORT_EVERY = 30.0
MAX_IN_FLIGHT = 256
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes | None
    hostile: bool


@dataclass
class Tally:
    sent: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # good requests, seconds
    rss_mb: list[tuple[float, float]] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] * 1e3


def requests_mix(model_dir: Path) -> tuple[list[Request], list[Request]]:
    """(good requests, hostile requests) built from the model's input example."""
    rows = example_records(model_dir, 100)
    row = rows[0]
    columns = list(row)
    plan = json.loads((model_dir / "artifacts" / "plan.json").read_text())
    number = plan["numeric"][0]
    category = (plan["categorical"] or plan["text"] or plan["numeric"])[0]
    v1 = f"/v1/models/{SERVICE}:predict"

    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    tensors = [{"name": c, "datatype": "FP64" if isinstance(row[c], (int, float)) else "BYTES",
                "shape": [1], "data": [row[c]]} for c in columns]
    good = [
        Request("v1 one row", "POST", v1, body({"instances": [row]}), False),
        Request("v1 one row", "POST", v1, body({"instances": [rows[1]]}), False),
        Request("v1 100 rows", "POST", v1, body({"instances": rows}), False),
        Request("v2 one row", "POST", f"/v2/models/{SERVICE}/infer", body({"inputs": tensors}),
                False),
    ]
    bad_shape = [dict(t) for t in tensors]
    bad_shape[0]["shape"] = [10**12]
    hostile = [
        Request("malformed JSON", "POST", v1, b'{"instances": [{', True),
        Request("list in a category", "POST", v1, body({"instances": [{**row, category: [1, 2]}]}),
                True),
        Request("1 MB value", "POST", v1, body({"instances": [{**row, number: "9" * 1_000_000}]}),
                True),
        Request("unknown column", "POST", v1, body({"instances": [{**row, "zzz": 1}]}), True),
        Request("v2 bad shape", "POST", f"/v2/models/{SERVICE}/infer",
                body({"inputs": bad_shape}), True),
        Request("explain bad parameters", "POST", f"/v1/models/{SERVICE}:explain",
                body({"instances": [row], "parameters": "x"}), True),
        Request("unload route", "POST", f"/v2/repository/models/{SERVICE}/unload", b"", True),
        Request("unknown version", "POST", f"/v2/models/{SERVICE}/versions/999/infer",
                body({"inputs": tensors}), True),
    ]
    return good, hostile


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


async def soak(url: str, pid: int | None, good: list[Request], hostile: list[Request],
               rate: float, seconds: float, hostile_share: float, seed: int) -> Tally:
    import aiohttp

    tally = Tally()
    pick = random.Random(seed)
    in_flight = 0

    async def one(session: aiohttp.ClientSession, request: Request) -> None:
        nonlocal in_flight
        in_flight += 1
        started = time.perf_counter()
        try:
            async with session.request(request.method, url + request.path, data=request.body,
                                       headers=JSON_HEADERS) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            tally.errors[f"{request.kind}: {type(error).__name__}"] += 1
            return
        finally:
            in_flight -= 1
        expected = 400 <= status < 500 if request.hostile else status == 200
        if not expected or status >= 500:
            tally.errors[f"{request.kind}: HTTP {status}"] += 1
        elif not request.hostile and request.kind == "v1 one row":
            tally.latencies.append(time.perf_counter() - started)

    def report(elapsed: float) -> None:
        memory = f"{tally.rss_mb[-1][1]:.0f} MB" if tally.rss_mb else "n/a"
        print(f"  {elapsed:6.0f}s  requests {sum(tally.sent.values()):>8}  errors "
              f"{sum(tally.errors.values()):>4}  one-row p50 {tally.percentile(50):6.2f} ms  "
              f"p99 {tally.percentile(99):7.2f} ms  server memory {memory}", flush=True)

    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        tasks: set[asyncio.Task] = set()
        start = time.perf_counter()
        next_report = REPORT_EVERY
        i = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            if pid is not None and (not tally.rss_mb or elapsed - tally.rss_mb[-1][0] >= 5.0):
                tally.rss_mb.append((elapsed, rss_mb(pid)))
            if elapsed >= next_report:
                report(elapsed)
                next_report += REPORT_EVERY
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            request = pick.choice(hostile if pick.random() < hostile_share else good)
            tally.sent[request.kind] += 1
            if in_flight >= MAX_IN_FLIGHT:
                tally.errors["client: too many in flight (server not keeping up)"] += 1
                continue
            task = asyncio.create_task(one(session, request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        if pid is not None:
            tally.rss_mb.append((time.perf_counter() - start, rss_mb(pid)))
        report(time.perf_counter() - start)
    return tally


def final_report(tally: Tally, seconds: float) -> None:
    total = sum(tally.sent.values())
    errors = sum(tally.errors.values())
    print(f"\n{total} requests in {seconds:.0f} s ({total / seconds:.1f}/s): "
          f"{', '.join(f'{k} {v}' for k, v in sorted(tally.sent.items()))}")
    print(f"  {'PASS' if errors == 0 else 'FAIL'}  errors: {errors} (target 0) "
          f"{dict(tally.errors) or ''}")
    print(f"  good one-row requests: p50 {tally.percentile(50):.2f} ms, p99 "
          f"{tally.percentile(99):.2f} ms")
    if len(tally.rss_mb) >= 2:
        warm = [mb for t, mb in tally.rss_mb if t >= min(60.0, seconds / 5)]
        first = warm[0] if warm else tally.rss_mb[0][1]
        last = tally.rss_mb[-1][1]
        peak = max(mb for _, mb in tally.rss_mb)
        print(f"  server memory: {first:.0f} MB after warm-up, {last:.0f} MB at the end "
              f"(growth {last - first:+.1f} MB, {100 * (last - first) / first:+.1f}%), "
              f"peak {peak:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a packaged model folder")
    parser.add_argument("--home", help="AUTOKFP_HOME whose only registered model's champion to use")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--pid", type=int, help="the running server's process id (memory)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--hostile", type=float, default=0.1, help="share of hostile requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or not 0 <= args.hostile <= 1:
        parser.error("--minutes and --rate must be positive, --hostile within 0..1")
    model_dir = resolve_model_dir(args)
    good, hostile = requests_mix(model_dir)
    workdir = Path(tempfile.mkdtemp(prefix="autokfp-soak-"))
    server = None
    try:
        url, pid = args.url, args.pid
        if url is None:
            server = ours_server(model_dir, workdir)
            print(f"starting the predictor on {server.url}; log in {workdir}", flush=True)
            server.start()
            url, pid = server.url, server.process.pid
        seconds = args.minutes * 60.0
        print(f"{args.rate:g} req/s for {seconds:.0f} s, {args.hostile:.0%} hostile", flush=True)
        tally = asyncio.run(soak(url.rstrip("/"), pid, good, hostile, args.rate, seconds,
                                 args.hostile, args.seed))
        final_report(tally, seconds)
    except Exception as exc:  # noqa: BLE001 - a soak reports, it does not gate
        print(f"soak failed: {exc}", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
