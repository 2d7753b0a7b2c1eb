"""Memory of crawling a bucket against its object count (issue 16: a crawl of 100,000 objects
with memory that does not grow with the count).

moto's S3 server (or, with ``--store gcs``, the GCS emulator, gcp-storage-emulator, which
answers a listing in one page of every object; with ``--store fake-gcs``, fake-gcs-server,
which pages listings as GCS does, holding its objects in files: they are written into its
folder, not uploaded, each count in a bucket of its own, 100,000 in ~1 minute; its listing
reads every object's attributes for each page, ~8 s a page at 100,000 objects) is started
as the tests start it; for each ``--objects`` count that many small CSV objects are put
under a prefix of their own. Each measurement runs in a fresh
Python process (the peak resident memory reset once the libraries are loaded), and the
script prints, side by side for the counts, what it added to the process's peak:

    list_before  the anchor: the s3 source's listing as it was before it was streamed
             (``s3fs.find(detail=True)``, every object's details in one dict, then the sorted
             list of them the crawl iterated), a copy kept here; on GCS, the gcs source's
             listing before it sent a page size (the client's iterator over ``list_blobs``
             with none: GCS answers 1,000 objects a page then, the stand-ins all of them)
    list     the source's listing as the crawl iterates it now (``S3Prefix._objects``:
             each object's key, ETag, size and time, one ``ListObjectsV2`` page at a time;
             ``GcsPrefix._objects``: pages of ``storage.gcs.LIST_PAGE``; nothing is kept, as
             the crawl keeps nothing of the listing)
    crawl    the discovery crawl of the source (``catalog.discovery.discover``: each object
             read and profiled on a sample), only up to ``--crawl-max`` objects (the crawl
             reads each object: about 30-50 objects/s on this machine)
    catalog_before  the anchor of ``catalog``: the same crawl with the code of the commit
             ``--anchor`` (default 3cb8f34, main before the crawl streamed: every dataset, its
             cache and index entries and its outcome held until the crawl ended, published
             in batches; session 13 used 8962f50, the streamed crawl before it read objects
             ahead), exported by ``git archive`` and imported in the worker instead, only up
             to ``--anchor-max`` objects
    catalog_unbatched  session 11's anchor: the crawl of this tree published all at once
             (every proposal in one list, the metadata file built as one string, then Lite),
             a copy kept here; only with ``--unbatched``
    catalog  the whole crawl into a fresh catalog (``crawl.crawl_sources``: discover, schema
             versions, the metadata file, DataHub Lite), streamed (each object catalogued,
             published a batch at a time and recorded in the on-disk ledger as it comes);
             only with ``--catalog`` and up to ``--crawl-max`` objects

    python scripts/benchmark_bucket_crawl.py --objects 10000 100000 --crawl-max 10000
    python scripts/benchmark_bucket_crawl.py --objects 1000 4000 10000 --crawl-max 10000 \
        --only-catalog
    python scripts/benchmark_bucket_crawl.py --objects 10000 100000 --crawl-max 100000 \
        --anchor 8962f50 --anchor-max 10000 --only-catalog
    python scripts/benchmark_bucket_crawl.py --store fake-gcs --objects 10000 100000 \
        --crawl-max 10000 --ways list_before list catalog

Each line also gives SQLite's own high-water mark of memory (``sqlite3_memory_highwater``
of the process's libsqlite3: the ledger's and DataHub Lite's page caches and statements),
to tell what of the peak's growth is SQLite's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY = b"customer_id,tenure,plan\n1,12,basic\n2,30,plus\n3,5,basic\n"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def put_gcs_objects(bucket: str, prefix: str, count: int) -> float:
    """``count`` small CSV objects under ``prefix`` on the GCS emulator."""
    from google.cloud import storage as gcs

    client = gcs.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "autokfp-test"))
    target = client.bucket(bucket)
    started = time.perf_counter()
    if target.blob(f"{prefix}/part-{count - 1:06d}.csv").exists():
        return 0.0
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: target.blob(f"{prefix}/part-{i:06d}.csv").upload_from_string(
            BODY, content_type="text/csv"), range(count)))
    return time.perf_counter() - started


def seed_gcs_objects(root: Path, bucket: str, prefix: str, count: int) -> float:
    """``count`` small CSV objects under ``prefix`` of ``bucket``, written straight into the
    folder a running fake-gcs-server (filesystem backend) serves (``tests.conftest.seed_fake_gcs``:
    the backend reads its folder at every request, so they are served at once); skipped when
    the last one is there."""
    from tests.conftest import seed_fake_gcs

    started = time.perf_counter()
    if (root / bucket / prefix / f"part-{count - 1:06d}.csv").exists():
        return 0.0
    seed_fake_gcs(root, bucket, ((f"{prefix}/part-{i:06d}.csv", BODY) for i in range(count)))
    return time.perf_counter() - started


def put_objects(bucket: str, prefix: str, count: int) -> float:
    """``count`` small CSV objects under ``prefix`` (skipped when the last one is there)."""
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = [f"{prefix}/part-{i:06d}.csv" for i in range(count)]
    started = time.perf_counter()
    try:
        client.head_object(Bucket=bucket, Key=keys[-1])
        return 0.0
    except client.exceptions.ClientError:
        pass
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=BODY), keys))
    return time.perf_counter() - started


def gcs_listing_before(uri: str) -> Any:
    """The gcs anchor: ``GcsPrefix._listed`` before the listing sent a page size (the
    client's iterator over ``list_blobs`` without one, as ``storage.gcs.iter_blobs`` was)."""
    from autokfp import storage
    from autokfp.catalog.sources.base import iso_utc, signature_of
    from autokfp.storage.gcs import client, split_uri

    bucket, key = split_uri(uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    for blob in client().list_blobs(bucket, prefix=prefix or None):
        relative = blob.name[len(prefix):]
        if relative and not blob.name.endswith("/"):
            yield (storage.join(uri, relative), relative,
                   signature_of("gcs", blob.generation, blob.size, blob.md5_hash),
                   iso_utc(blob.updated))


def listing_before(uri: str) -> list[tuple[str, str, str, str | None]]:
    """The anchor: the s3 source's listing before it was streamed (``storage.s3_objects``
    over ``s3fs.find`` and ``S3Prefix._objects``' list, as they were at 1f09c67)."""
    from autokfp.catalog.sources.base import iso_utc, signature_of
    from autokfp.storage import join
    from autokfp.storage.s3 import errors, filesystem, s3_path

    fs = filesystem(uri)
    prefix = s3_path(uri).rstrip("/")
    with errors(uri):
        try:
            found = fs.find(prefix, detail=True)
        except FileNotFoundError:
            found = {}
    found = {path: info for path, info in found.items() if info.get("type") == "file"
             and path.startswith(prefix + "/") and not path.endswith("/")}
    objects = []
    for path, info in sorted(found.items()):
        relative = path[len(prefix) + 1:]
        objects.append({"uri": join(uri, relative), "relative": relative,
                        "etag": str(info.get("ETag", "")).strip('"'), "size": info.get("size"),
                        "modified": info.get("LastModified")})
    return [(o["uri"], o["relative"], signature_of("s3", o["etag"], o["size"]),
             iso_utc(o["modified"])) for o in objects]


def publish_before(schemas: list[Any], store: Any, settings: Any, removed: Any = ()) -> Any:
    """Session 11's anchor: ``crawl._publish_schemas`` and ``datahub.publish`` as they were
    at 1f09c67 (every proposal in one list, the metadata file as one string), given the
    crawl's proposals (its schemas' and the soft deletes, as the streamed crawl hands them)."""
    import uuid

    from autokfp import storage
    from autokfp.catalog import datahub

    proposals = list(schemas)  # the streamed crawl hands the proposals themselves
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    uri = store.uri("metadata", f"crawl-{stamp}-{uuid.uuid4().hex[:6]}.json")
    result = datahub.PublishResult(proposals=len(proposals))
    records = [p.to_obj(simplified_structure=True) if isinstance(p, datahub.Proposal)
               else datahub.simplified_obj(p) for p in proposals]
    storage.write_text(uri, "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]")
    result.metadata_uri = uri
    result.lite_path = str(datahub.lite_path(settings.catalog_dir))
    result.lite_written = datahub.load_into_lite(proposals, settings.catalog_dir)
    return result


def _sqlite_highwater_mb() -> float | None:
    """SQLite's high-water mark of memory in this process (every connection), in MB."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    return float(lib.sqlite3_memory_highwater(0)) / 2**20


def _watch(before_kb: int, started: float) -> None:
    """Every 20 s, append to ``$AUTOKFP_HOME.progress`` how many objects the crawl has read
    and what the process added to its peak so far (the growth during one long crawl, and
    what a crawl cut short had reached)."""
    import threading

    from autokfp.catalog.sources import files

    read = [0]
    real = files.discover_file

    def counted(*args: Any, **kwargs: Any) -> Any:
        read[0] += 1
        return real(*args, **kwargs)

    files.discover_file = counted  # type: ignore[assignment]
    path = os.environ.get("AUTOKFP_HOME", "bench") + ".progress"

    def run() -> None:
        while True:
            time.sleep(float(os.environ.get("BENCH_PROGRESS_SECONDS", "20")))
            sqlite = _sqlite_highwater_mb()
            with open(path, "a", encoding="utf-8") as out:
                out.write(f"{time.perf_counter() - started:7.0f} s {read[0]:>8,} objects read"
                          f" +{(_status_kb('VmHWM') - before_kb) / 1024:6.1f} MB peak, RSS "
                          f"{_status_kb('VmRSS') / 1024:6.1f} MB, SQLite {sqlite or 0:.1f} MB, "
                          f"{time.process_time():.0f} CPU s, load {os.getloadavg()[0]:.1f}\n")

    threading.Thread(target=run, daemon=True).start()


def worker(way: str, uri: str) -> dict[str, Any]:
    """In a fresh process: the listing or the crawl; what it added to the peak."""
    from autokfp.catalog.discovery import discover
    from autokfp.catalog.sources.base import open_source
    from autokfp.config import GcsSource, S3Source

    source: Any
    if uri.startswith("gs://"):
        source = GcsSource(name="bucket", kind="gcs", uri=uri)
        from autokfp.storage.gcs import client

        client()  # the client built before the peak is reset, in every way alike
    else:
        source = S3Source(name="bucket", kind="s3", uri=uri)
        from autokfp.storage.s3 import filesystem

        filesystem(uri)
    reader = open_source(source)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    cpu, started = time.process_time(), time.perf_counter()
    digest = hashlib.sha256()
    if way == "list_before":
        found = 0
        for row in (gcs_listing_before(uri) if uri.startswith("gs://") else listing_before(uri)):
            found += 1
            digest.update(repr(row).encode())
    elif way == "list":
        found = 0
        for row in reader._objects():
            found += 1
            digest.update(repr(row).encode())
    elif way in ("catalog", "catalog_before", "catalog_unbatched"):
        from autokfp.catalog import crawl

        _watch(before, started)

        if way == "catalog_unbatched":
            crawl._publish_schemas = publish_before  # type: ignore[assignment]
        report = crawl.crawl_sources([source], sample_rows=100)
        assert len(report.found) == report.counts()["new"]  # what callers read is all there
        found = report.counts()["catalogued"]
        digest.update(repr((report.published.get("proposals"),
                            report.published.get("lite_written"))).encode())
    else:
        found = sum(d.ok for d in discover([source], sample_rows=100))
    import autokfp

    return {"package": str(Path(autokfp.__file__).parent),
            "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "added_mb": (_status_kb("VmHWM") - before) / 1024, "found": found,
            "sqlite_mb": _sqlite_highwater_mb(),
            "digest": digest.hexdigest()[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--crawl-max", type=int, default=10_000,
                        help="crawl only the counts up to this (the crawl reads each object)")
    parser.add_argument("--catalog", action="store_true",
                        help="also the whole crawl into a catalog, and its anchor")
    parser.add_argument("--only-catalog", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--anchor", default="3cb8f34",
                        help="the commit whose crawl is catalog_before (git archive of it)")
    parser.add_argument("--anchor-max", type=int, default=None,
                        help="run catalog_before only up to this many objects (default "
                             "--crawl-max)")
    parser.add_argument("--unbatched", action="store_true",
                        help="also session 11's anchor (publishing all at once)")
    parser.add_argument("--store", choices=["s3", "gcs", "fake-gcs"], default="s3",
                        help="moto's S3 server (default), the GCS emulator (gcp-storage-"
                             "emulator: it answers a listing in one page of every object, "
                             "whatever the page size) or fake-gcs-server (pages as GCS does)")
    parser.add_argument("--ways", nargs="+", default=None,
                        choices=["list_before", "list", "crawl", "catalog_before", "catalog",
                                 "catalog_unbatched"],
                        help="exactly these ways (instead of what --catalog, --only-catalog "
                             "and --unbatched choose)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker)), flush=True)
        return 0

    import tempfile

    sys.path.insert(0, str(ROOT))
    from tests import conftest
    from tests.conftest import fake_gcs_server, gcs_emulator, s3_server

    waited = conftest._wait_for_http  # moto takes longer than the tests' 30 s to start at load
    conftest._wait_for_http = lambda url, process, seconds=300.0: waited(url, process, seconds)

    base = Path(tempfile.mkdtemp(prefix="autokfp-bucket-"))

    class _Folders:
        def mktemp(self, name: str) -> Path:
            path = base / name
            path.mkdir(parents=True, exist_ok=True)
            return path

    if args.store == "gcs":
        server = gcs_emulator.__wrapped__()
        put = put_gcs_objects
        where = "the GCS emulator (gcp-storage-emulator: one page of every object)"
    elif args.store == "fake-gcs":
        def paging_server() -> Any:
            from tests.conftest import GcsEmulator

            with fake_gcs_server(base / "fake-gcs", log=base / "fake-gcs-server.log") as url:
                os.environ["STORAGE_EMULATOR_HOST"] = url
                os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "autokfp-test")
                yield GcsEmulator(host=url, bucket="autokfp-bucket")

        server = paging_server()
        # Each count in a bucket of its own: the server's filesystem backend walks the whole
        # bucket for every listing page, so a smaller prefix next to a larger one would pay
        # for the larger one's objects.
        put = lambda bucket, prefix, count: seed_gcs_objects(  # noqa: E731
            base / "fake-gcs", f"{bucket}-{count}", prefix, count)
        where = ("fake-gcs-server (pages as GCS does; filesystem backend, the objects written "
                 "into its folder)")
    else:
        server = s3_server.__wrapped__(_Folders())
        put = put_objects
        where = "moto's S3 server"
    s3 = next(server)
    try:
        print(f"Bucket crawl on {where}: {', '.join(f'{n:,}' for n in args.objects)} "
              f"objects; {os.cpu_count()} cores")
        ways = ["list_before", "list", "crawl"] if not args.only_catalog else []
        ways += ["catalog_before", "catalog"] if args.catalog or args.only_catalog else []
        ways += ["catalog_unbatched"] if args.unbatched else []
        ways = args.ways or ways
        anchor = base / "anchor"
        if "catalog_before" in ways:  # the anchor's package, imported by its workers
            anchor.mkdir()
            archive = subprocess.run(["git", "archive", args.anchor, "autokfp"], cwd=ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(anchor)], input=archive, check=True)
            print(f"  catalog_before: autokfp of {args.anchor} (git archive into {anchor})")
        rows: dict[str, dict[int, dict[str, Any]]] = {way: {} for way in ways}
        for count in args.objects:
            prefix = f"crawl-{count}"
            seconds = put(s3.bucket, prefix, count)
            print(f"  {count:,} objects put in {seconds:.0f} s", flush=True)
            for way in rows:
                if way.startswith(("crawl", "catalog")) and count > args.crawl_max:
                    continue
                if way == "catalog_before" and count > (args.crawl_max if args.anchor_max is None
                                                         else args.anchor_max):
                    continue
                load = os.getloadavg()[0]
                env = {**os.environ, "PYTHONWARNINGS": "ignore",
                       "AUTOKFP_HOME": str(base / f"home-{way}-{count}")}
                if way == "catalog_before":  # PYTHONPATH goes before the installed package
                    env["PYTHONPATH"] = str(anchor)
                uri = (f"gs://{s3.bucket}-{count}/{prefix}" if args.store == "fake-gcs"
                       else f"{s3.base_uri}/{prefix}")
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", way, uri],
                    capture_output=True, text=True, cwd=ROOT, env=env)
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if done.returncode != 0 or line is None:
                    print(f"  {way} {count:,}: FAILED {done.stderr.strip().splitlines()[-1:]}")
                    continue
                result = {**json.loads(line[7:]), "load": load}
                rows[way][count] = result
                sqlite = result.get("sqlite_mb")
                print(f"  {way:<11} {count:>8,} objects: {result['seconds']:7.1f} s "
                      f"({result['found'] / max(result['seconds'], 1e-9):.0f}/s), "
                      f"{result['cpu']:6.1f} CPU s, +{result['added_mb']:7.1f} MB"
                      + (f" (SQLite's high water {sqlite:.1f} MB)" if sqlite is not None else "")
                      + f" ({result['found']:,} found, load {load:.1f} -> "
                      f"{os.getloadavg()[0]:.1f}, autokfp from {result['package']})",
                      flush=True)
        for count in rows.get("catalog", {}):
            if count in rows.get("catalog_before", {}):
                same = rows["catalog"][count]["digest"] == rows["catalog_before"][count]["digest"]
                print(f"  {count:,} objects: the crawl published "
                      f"{'the same' if same else 'NOT THE SAME'} number of proposals to the "
                      "metadata file and Lite as its anchor")
        for count in rows.get("list", {}):
            if count in rows.get("list_before", {}):
                same = rows["list"][count]["digest"] == rows["list_before"][count]["digest"]
                print(f"  {count:,} objects: the streamed listing "
                      f"{'equals' if same else 'DIFFERS FROM'} the anchor's (uri, relative "
                      "path, signature, modified), in order")
        print("\nside by side (MB added to the process's peak; growth per 1,000 more objects):")
        for way, by_count in rows.items():
            counts = sorted(by_count)
            if not counts:
                continue
            shown = "   ".join(f"{n:,}: {by_count[n]['added_mb']:.1f} MB" for n in counts)
            growth = [f"{(by_count[b]['added_mb'] - by_count[a]['added_mb']) * 1000 / (b - a):+.2f}"
                      f" MB per 1,000 ({a:,} -> {b:,})" for a, b in zip(counts, counts[1:])]
            print(f"  {way:<11} {shown}   {'; '.join(growth)}")
            if all(by_count[n].get("sqlite_mb") is not None for n in counts):
                print(f"  {'':<11} SQLite's high water: " + "   ".join(
                    f"{n:,}: {by_count[n]['sqlite_mb']:.1f} MB" for n in counts))
    finally:
        next(server, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
