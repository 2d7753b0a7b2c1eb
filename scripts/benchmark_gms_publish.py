"""Sending a crawl's metadata to a DataHub GMS: batches one after another (the anchor, as
``emit_to_gms`` sent them before session 13: ``workers=1``) against ``GMS_WORKERS`` batches
at a time (issue 16: publish metadata in parallel where the machine allows).

GMS cannot run here (it needs Kafka, OpenSearch and MySQL), so the target is the tests' GMS
stand-in (``tests/engine/catalog/gms_fake.py``: it validates every proposal against
DataHub's schemas, as GMS does), in a process of its own (its validation is CPU this
process must not share), with ``--latency`` seconds added to each answer (a GMS writes a
batch to its database and search index before it answers). Both ways send the same
proposals (``--datasets`` datasets of 5 aspects, in batches of 100) in the same run, and the
script checks that the stand-in took every one each time.

    python scripts/benchmark_gms_publish.py --datasets 2000 --latency 0.05 0.2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve(latency: float) -> None:
    """In a child process: the GMS stand-in; prints its URL, then on each input line what
    it took (proposals, most requests in flight)."""
    sys.path.insert(0, str(ROOT))
    from tests.engine.catalog.gms_fake import FakeGms

    with FakeGms(None, latency=latency) as gms:
        print(gms.url, flush=True)
        for _ in sys.stdin:
            print(json.dumps([len(gms.proposals()), gms.most_in_flight]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=2000)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.2],
                        help="seconds the GMS stand-in takes per request")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="ways to compare (default: 1, the anchor, and GMS_WORKERS)")
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from autokfp.catalog import datahub
    from autokfp.catalog.profiling import profile_frame

    frame = pd.DataFrame({"customer_id": [1, 2, 3], "tenure": [12, 30, 5],
                          "plan": ["basic", "plus", "basic"]})
    base = profile_frame(frame, "bucket/part.csv", "s3", "s3://b/part.csv", fmt="csv",
                         row_count=3)
    proposals = []
    for i in range(args.datasets):
        schema = base.__class__.from_dict({**base.to_dict(), "dataset_id": f"bucket/p-{i}.csv",
                                           "location": f"s3://b/p-{i}.csv", "urn": None})
        proposals += datahub.metadata_proposals(schema)
    ways = args.workers or [1, datahub.GMS_WORKERS]
    print(f"{len(proposals):,} aspects of {args.datasets:,} datasets, batches of "
          f"{datahub._GMS_BATCH}, to the GMS stand-in")
    for latency in args.latency:
        row = []
        for workers in ways:
            server = subprocess.Popen([sys.executable, __file__, "--serve", str(latency)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert server.stdin is not None and server.stdout is not None
            try:
                url = server.stdout.readline().strip()
                cpu, started = time.process_time(), time.perf_counter()
                sent = datahub.emit_to_gms(proposals, url, workers=workers)
                took = time.perf_counter() - started
                server.stdin.write("count\n")
                server.stdin.flush()
                taken, most = json.loads(server.stdout.readline())
            finally:
                server.stdin.close()
                server.wait(timeout=30)
            assert sent == taken == len(proposals)
            label = "one at a time (anchor)" if workers == 1 else f"{workers} at a time"
            row.append(f"{label}: {took:6.2f} s ({len(proposals) / took:,.0f} aspects/s, "
                       f"{time.process_time() - cpu:.2f} CPU s here, at most "
                       f"{most} in flight)")
        print(f"  {latency * 1000:.0f} ms per answer   " + "   ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
