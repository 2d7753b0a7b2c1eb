"""H2O AutoML as an autokfp engine.

Each training call starts its own H2O cluster (own port and name, so parallel tasks never
share one), trains within the budget, exports the best model that can be exported as a
MOJO, and always shuts the cluster down. A cluster whose JVM dies during training (killed
for memory, crashed) is replaced by a fresh one that trains again within the remaining
budget, ``engines.h2o.max_restarts`` times at most. XGBoost uses a GPU when the node has one
(H2O's backend "auto"); everything else runs on CPU.

Its settings (``H2OSettings``) sit under ``engines.h2o`` in the run config; the time limit,
seed and threads come from the engine-neutral ``budget``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from autokfp.engine_registry import EngineSpec, register_engine
from autokfp.errors import DataError, TrainingError
from autokfp.lifeline import at_every_exit
from autokfp.modeling.feature_file import TARGET_COLUMN, FeatureFile
from autokfp.training.base import EngineResult, EngineSettings
from autokfp.training.mojo import MojoScorer

log = logging.getLogger(__name__)

# The budget is search time: AutoML gets all of ``budget.max_runtime_secs`` (less what a
# cluster that died already searched), and the JVM's start-up, the upload and the MOJO export
# come on top, as they do for H2O run alone. A restarted search never gets less than
# MIN_AUTOML_SECS.
MIN_AUTOML_SECS = 10
# a cluster whose JVM dies during training (killed for memory, crashed) is restarted this
# often by default (engines.h2o.max_restarts) to train again within the remaining budget
MAX_CLUSTER_RESTARTS = 1
# cross-validation folds when engines.h2o.nfolds is unset: fewer under a small budget
SMALL_BUDGET_FOLDS = 3
FOLDS_BUDGET_SECS = 300
# H2O AutoML's own choice between k-fold cross-validation and blending when its nfolds is
# left at -1 (3.46, ``AutoML.validateModelValidation``): blending once predictors x rows /
# (max_runtime_secs x the cluster's threads) exceeds this. Cross-validation costs every model
# k + 1 fits; on a table that large for the budget the models are cut short (diamonds, 40,455
# rows, 60 s: 3-fold CV left the GBMs 1-7 s and CV RMSE 1,700-3,998, blending 23-26 s and
# 548-586). H2O skips the rule (and cross-validates) whenever the CV predictions are to be
# kept, so autokfp applies it itself.
BLENDING_CELLS_PER_THREAD_SEC = 2064
# blending mode: the shares of the training rows held out (seeded, by row) as the validation
# rows (early stopping, the leaderboard, and the leader's out-of-sample predictions) and the
# blending rows (the stacked ensembles' metalearner): H2O's own 70/10/20
VALIDATION_SHARE = 0.10
BLENDING_SHARE = 0.20
# the column that marks each row's part in blending mode (not a predictor)
PART_COLUMN = "__autokfp_part__"
PART_TRAIN, PART_VALID, PART_BLEND = 0, 1, 2
SORT_METRICS = {"auc": "AUC", "logloss": "logloss", "accuracy": "logloss", "f1": "AUC",
                "rmse": "RMSE", "mae": "MAE", "r2": "RMSE"}
MOJO_FILE = "model.zip"
# the leader's out-of-fold predictions are downloaded this many rows at a time
OOF_CHUNK_ROWS = 500_000
# the leader's recipe (algorithm and actual parameters; a stacked ensemble's base models'
# too): what ``refit`` trains again on every labelled row after the champion gate
RECIPE_FILE = "recipe.json"
# parameters a recipe leaves out: the frames, columns and keys of the run that trained it,
# and the time AutoML happened to allot (a refit gets the budget instead)
_RUN_BOUND_PARAMS = frozenset({
    "model_id", "training_frame", "validation_frame", "blending_frame", "calibration_frame",
    "response_column", "ignored_columns", "fold_column", "weights_column", "offset_column",
    "checkpoint", "export_checkpoints_dir", "in_training_checkpoints_dir", "base_models",
    "custom_metric_func", "custom_distribution_func", "max_runtime_secs",
    "pretrained_autoencoder", "save_matrix_directory",
    "obj_reg"})  # GLM's is 1 / the rows it was fitted on; its default is that of the refit
# a node of a remote cluster not heard from for this long counts as lost
HEARTBEAT_SECS = 10
# how long a local JVM may take to start by default (engines.h2o.start_timeout_secs): H2O's
# own 60 s is too short for a CPU-throttled pod or a cold JVM on a busy node (under load ~33
# a refit's JVM missed it, docs/cluster.md); a JVM that fails exits, and is reported, at once
START_TIMEOUT_SECS = 300
# starts tried when the JVM finds its ports taken (h2o.init passes the probed port as
# -baseport, so H2O itself moves up past ports taken meanwhile: a rare race is left)
PORT_ATTEMPTS = 3


class H2OSettings(EngineSettings):
    """``engines.h2o``: how H2O AutoML searches (the time limit is ``budget.max_runtime_secs``)."""

    max_models: int | None = Field(
        default=None, ge=1, le=500,
        description="an optional cap on the models AutoML trains (stacked ensembles excluded); "
                    "unset, the time budget alone ends the search")
    nfolds: int | None = Field(
        default=None, ge=2, le=10,
        description="cross-validation folds; unset: 3 for budgets under 300 s (time for more "
                    "models and the stacked ensembles), else 5")
    max_mem_size: str = Field(default="4G", pattern=r"^[0-9]+[mMgG]$",
                              description="the H2O JVM's heap (keep it under the task's memory)")
    max_restarts: int = Field(
        default=MAX_CLUSTER_RESTARTS, ge=0, le=5,
        description="how often a cluster whose JVM dies during training (killed for memory, "
                    "crashed) is restarted to train again within the remaining budget")
    start_timeout_secs: int = Field(
        default=START_TIMEOUT_SECS, ge=10, le=3600,
        description="how long a local H2O JVM may take to start (H2O's own limit is 60 s; a "
                    "CPU-throttled pod or a cold JVM on a busy node can need minutes). A JVM "
                    "that fails exits at once and its error is reported, whatever this is")
    include_algos: list[Literal["GLM", "GBM", "DRF", "XGBoost", "DeepLearning",
                                "StackedEnsemble"]] | None = Field(
        default=None, description="only these algorithms (default: all but DeepLearning)")
    validation: Literal["auto", "cross_validation", "blending"] = Field(
        default="auto",
        description="how AutoML's models are validated: 'cross_validation' (k folds, every "
                    "model fitted k + 1 times; the leader's out-of-fold predictions over every "
                    "training row), 'blending' (one fit per model; 10% of the rows held out "
                    "for early stopping, the leaderboard and the leader's out-of-sample "
                    "predictions, 20% for the stacked ensembles), or 'auto': H2O AutoML's own "
                    "rule, blending when the table is too large for cross-validation within "
                    "the budget (predictors x rows / (seconds x threads) > 2064), else "
                    "cross-validation. A set nfolds means cross_validation under 'auto', and is a "
                    "config error with 'blending' (which has no folds)")
    warm_start: bool = Field(
        default=True,
        description="start the local H2O cluster, and warm it with a few throwaway models, "
                    "while the training step prepares its rows, so AutoML's clock starts on a "
                    "running, warm JVM (false: the cluster starts cold inside the training "
                    "call)")

    @model_validator(mode="after")
    def _folds_need_cross_validation(self) -> H2OSettings:
        # blending fits each model once, without folds: a set nfolds would be silently unused
        if self.validation == "blending" and self.nfolds is not None:
            raise ValueError(
                f"nfolds: {self.nfolds} is set but validation: blending fits each model once, "
                "on held-out rows, without folds; remove nfolds, or set validation: "
                "cross_validation (or auto) to cross-validate with that many folds")
        return self

    def folds(self, max_runtime_secs: float) -> int:
        """``nfolds``, or its default for this budget."""
        if self.nfolds is not None:
            return self.nfolds
        return SMALL_BUDGET_FOLDS if max_runtime_secs < FOLDS_BUDGET_SECS else 5

    def blends(self, rows: int, predictors: int, max_runtime_secs: float, threads: int) -> bool:
        """Whether AutoML validates by blending (one fit per model, held-out rows) rather than
        k-fold cross-validation: ``validation``, or under 'auto' H2O AutoML's own rule."""
        if self.validation != "auto":
            return self.validation == "blending"
        if self.nfolds is not None:
            return False
        return too_large_to_cross_validate(rows, predictors, max_runtime_secs, threads)


def too_large_to_cross_validate(rows: int, predictors: int, max_runtime_secs: float,
                                threads: int) -> bool:
    """H2O AutoML's rule for its default (``nfolds=-1``): a table whose predictors x rows per
    second of budget and cluster thread exceed ``BLENDING_CELLS_PER_THREAD_SEC`` is blended,
    not cross-validated."""
    if max_runtime_secs <= 0:
        return False
    return rows * predictors / (max_runtime_secs * max(1, threads)) > BLENDING_CELLS_PER_THREAD_SEC


def gpu_available() -> bool:
    """True when an NVIDIA GPU is visible to this container."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def _free_port() -> int:
    """A port p with p+1 also free (H2O listens on both)."""
    import random

    for _ in range(50):
        port = random.randrange(20_000, 60_000, 2)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise TrainingError("no free port pair found for a local H2O cluster")


def _cloud_pids(name: str) -> list[int]:
    """The running JVM(s) of cloud ``name`` (their command line holds ``-name <name>``)."""
    return pids_with_cmdline(f"-name\0{name}\0".encode())


def pids_with_cmdline(wanted: bytes) -> list[int]:
    """The running processes whose command line (``/proc/<pid>/cmdline``, NUL-separated)
    holds ``wanted``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill_cloud(name: str, grace_secs: float = 0.0) -> None:
    """Kill the JVM(s) of a cloud, after ``grace_secs`` to exit on their own; return once gone.

    H2O leaves the JVM of a failed start running, and one asked to shut down takes a moment.
    """
    import signal

    deadline = time.monotonic() + grace_secs
    while _cloud_pids(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _cloud_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    deadline = time.monotonic() + 10
    while _cloud_pids(name) and time.monotonic() < deadline:  # a killed process has no cmdline
        time.sleep(0.05)


_REAPERS: list[threading.Thread] = []


# the prefix of the folder each local JVM gets for its temporary files (see _JvmFolders)
JVM_SCRATCH_PREFIX = "autokfp-h2o-"


@dataclass
class _JvmFolders:
    """Where one local JVM keeps its files, removed once it is gone (``remove``).

    H2O's JVM extracts XGBoost's native library (``libxgboost4j_gpu*.so``, 150 MB) into
    ``java.io.tmpdir`` at every start and deletes it only on a clean exit of the JVM; one
    killed (a failed start, a shutdown that lingered past its grace, a task killed) left it
    in ``/tmp`` for good: 265 of them, 39 GB, filled the disk of a CI machine. Each JVM gets
    a scratch folder of its own (``storage.scratch``: an owner file, removed by the next
    start when its process was killed) for ``java.io.tmpdir`` and H2O's ``ice_root``, and
    the folder h2o-py makes for the JVM's output logs (never removed by h2o) goes too."""

    scratch: str
    logs: str = ""  # h2o-py's own temporary folder of the JVM's stdout/stderr, once launched

    @classmethod
    def make(cls) -> _JvmFolders:
        from autokfp.storage.scratch import remove_stale, scratch_folder

        remove_stale(JVM_SCRATCH_PREFIX)
        folder = scratch_folder(JVM_SCRATCH_PREFIX)
        os.mkdir(os.path.join(folder, "ice"))
        os.mkdir(os.path.join(folder, "java"))
        return cls(folder)

    @property
    def ice_root(self) -> str:
        return os.path.join(self.scratch, "ice")

    @property
    def java_options(self) -> list[str]:
        return [f"-Djava.io.tmpdir={os.path.join(self.scratch, 'java')}"]

    def note_launch(self, launch: _Launch) -> None:
        folder = os.path.dirname(launch.stdout) if launch.stdout else ""
        # only h2o-py's own folder of logs, never a folder anyone else uses
        if folder and os.path.basename(folder).startswith("tmp") \
                and os.path.dirname(os.path.abspath(folder)) == os.path.abspath(
                    os.path.dirname(self.scratch)):
            self.logs = folder

    def remove(self) -> None:
        for folder in (self.scratch, self.logs):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def _kill_cloud_and_clean(name: str, folders: _JvmFolders | None,
                          grace_secs: float = 0.0) -> None:
    """``_kill_cloud``, then the JVM's folders removed (it is gone: nothing writes there)."""
    _kill_cloud(name, grace_secs)
    if folders is not None and not _cloud_pids(name):
        folders.remove()


def _reap_in_background(name: str, folders: _JvmFolders | None = None) -> None:
    """``_kill_cloud_and_clean(name, folders, grace_secs=5)`` on a thread;
    ``wait_for_shutdowns`` joins it."""
    reaper = threading.Thread(target=_kill_cloud_and_clean, args=(name, folders, 5.0),
                              name=f"reap-{name}", daemon=True)
    reaper.start()
    _REAPERS.append(reaper)


# in every process, a child forked from one that imported this module too: an engine's
# child ended before its reaper would leave the JVM killed with its parent
# (``dies_with_parent``) and its 150 MB of temporary files behind
@at_every_exit
def wait_for_shutdowns(timeout: float = 20.0) -> None:
    """Return once every cluster shut down by this process is gone (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while _REAPERS:
        _REAPERS.pop().join(max(0.0, deadline - time.monotonic()))


def _record_jvm(h2o: Any) -> None:
    """Tell a supervising process which JVM this cluster runs in (see training.isolation).

    H2O starts its JVM in a session of its own, so killing this process (out of memory, a
    timeout) would leave the JVM running; the supervisor kills the pids listed here.
    """
    from autokfp.training.isolation import CHILD_PIDS_ENV

    pid_file = os.environ.get(CHILD_PIDS_ENV)
    server = getattr(h2o.connection(), "local_server", None)
    process = getattr(server, "_process", None)
    if pid_file and process is not None:
        with open(pid_file, "a", encoding="utf-8") as handle:
            handle.write(f"{process.pid}\n")


_LAUNCH_LOCK = threading.Lock()


@dataclass
class _Launch:
    """What one JVM launch left behind: its process and the files h2o sent its output to."""

    process: Any = None
    stdout: str = ""
    stderr: str = ""
    began: float = field(default_factory=time.monotonic)


@contextmanager
def _launching_jvm(start_timeout_secs: float) -> Iterator[_Launch]:
    """While open, ``h2o.init`` waits up to ``start_timeout_secs`` for its JVM to start, and
    the JVM it launches is SIGKILLed by the kernel when the thread that started it ends
    (``lifeline.dies_with_parent``): a training process killed outright (``kill -9``, the
    out-of-memory killer, a timeout's kill of pytest) cannot leave its JVM running, which
    H2O starts in a session of its own with nothing watching its parent. The yielded
    ``_Launch`` gets the JVM's process and log files, so a failed start can be told apart
    from a slow one (``_start_failure``).

    h2o launches the JVM with ``subprocess.Popen(..., preexec_fn=os.setsid)`` in
    ``h2o.backend.server`` and waits for it for ``H2OLocalServer._TIME_TO_START`` seconds
    (60, not a parameter of ``h2o.init``); for the block only, that module's
    ``subprocess`` is swapped for one whose ``Popen`` adds the request after h2o's own
    ``setsid`` and notes the launch, and the wait is set to ``start_timeout_secs``."""
    from h2o.backend import server

    from autokfp.lifeline import dies_with_parent

    real = server.subprocess
    launch = _Launch()

    class _Launcher:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def Popen(*args: Any, preexec_fn: Any = None, **kwargs: Any) -> Any:  # noqa: N802
            launch.stdout = str(getattr(kwargs.get("stdout"), "name", "") or "")
            launch.stderr = str(getattr(kwargs.get("stderr"), "name", "") or "")
            launch.began = time.monotonic()
            launch.process = real.Popen(*args, preexec_fn=dies_with_parent(then=preexec_fn),
                                        **kwargs)
            return launch.process

    with _LAUNCH_LOCK:
        limit = server.H2OLocalServer._TIME_TO_START
        server.subprocess = _Launcher()
        server.H2OLocalServer._TIME_TO_START = start_timeout_secs
        try:
            yield launch
        finally:
            server.subprocess = real
            server.H2OLocalServer._TIME_TO_START = limit


# the lines of a JVM's output that say why it stopped: H2O's own FATAL/ERRR log lines, and
# what the JVM itself prints when it cannot start (bad options, no memory, no such class)
_CAUSE_LINE = re.compile(r"\b(FATAL|ERRR)\b|Error|Exception|Could not|Invalid|Unrecognized|"
                         r"[Nn]o such|not available|denied", re.ASCII)
_H2O_LOG_PREFIX = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+\s+\d+\s+\S+\s+")
# H2O refuses a -port that another process took between our probe and its bind
_PORT_TAKEN = re.compile(r"required ports? .* not available")


def _log_lines(path: str, limit: int = 200) -> list[str]:
    """The last ``limit`` non-empty lines of a JVM log file ([] when there is none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip() for line in handle if line.strip()]
    except OSError:
        return []
    return [_H2O_LOG_PREFIX.sub("", line) for line in lines[-limit:]]


def _start_cause(launch: _Launch) -> str:
    """Why a JVM that exited did so, from its stderr then its stdout (its last lines when no
    line names an error), at most 3 lines."""
    found: list[str] = []
    for path in (launch.stderr, launch.stdout):
        for line in _log_lines(path):
            if _CAUSE_LINE.search(line) and " INFO " not in f" {line} " and line not in found:
                found.append(line)
    if not found:
        found = (_log_lines(launch.stderr, 3) + _log_lines(launch.stdout, 3))[-3:]
    return " | ".join(line[:300] for line in found[-3:]) or "it printed nothing"


@dataclass
class _StartFailure:
    """Why a local cluster did not start: ``error`` to raise, or a port race to retry."""

    error: TrainingError
    port_taken: bool = False


def _start_failure(exc: BaseException, launch: _Launch, name: str, limit: float,
                   max_mem_size: str) -> _StartFailure:
    """Tell a JVM that is still starting (slow: raise the limit) from one that failed (its
    log says why) or never ran (no Java), for the error a failed start raises."""
    process = launch.process
    seconds = time.monotonic() - launch.began
    if process is None:  # h2o gave up before launching: no Java, or not a usable one
        return _StartFailure(TrainingError(
            f"could not start a local H2O cluster: {type(exc).__name__}: {exc}. H2O needs Java "
            "17 on the PATH (or in H2O_JAVA_HOME / JAVA_HOME)"))
    code = process.poll()
    if code is None:
        progress = _log_lines(launch.stdout, 1) or _log_lines(launch.stderr, 1)
        if "wasn't able to start" in str(exc):
            return _StartFailure(TrainingError(
                f"the local H2O JVM (cloud {name}) was still starting after {seconds:.0f}s, the "
                f"start limit engines.h2o.start_timeout_secs ({limit:g}s), and was stopped; it "
                "had not failed, a slow node (a CPU-throttled pod, a cold JVM on a busy "
                "machine) only needs longer: raise engines.h2o.start_timeout_secs, or the "
                "task's CPU request. The JVM's last log line: "
                + (progress[0][:300] if progress else "none yet (Java itself was still loading)")))
        return _StartFailure(TrainingError(
            f"the local H2O JVM (cloud {name}) started but h2o could not connect to it: "
            f"{type(exc).__name__}: {exc}"))
    cause = _start_cause(launch)
    hint = ""
    if re.search(r"heap|memory|Could not reserve", cause, re.IGNORECASE):
        hint = (f"; its heap is engines.h2o.max_mem_size ({max_mem_size}): lower it, or raise "
                "the task's memory above it")
    elif "Java Virtual Machine" in cause or "Unrecognized" in cause:
        hint = "; check the Java installation (Java 17; H2O_JAVA_HOME or JAVA_HOME)"
    return _StartFailure(TrainingError(
        f"the local H2O JVM (cloud {name}) failed to start: it exited with code {code} after "
        f"{seconds:.0f}s; its log says: {cause}{hint}"), port_taken=bool(_PORT_TAKEN.search(cause)))


def _cluster_died(exc: BaseException, jvm_gone: bool = False) -> bool:
    """True when ``exc`` means the H2O cluster was lost, not that the data or settings are bad.

    h2o raises H2OConnectionError once its server stops answering ("Local server has died
    unexpectedly", connection refused or reset, a timeout), and a response cut short comes
    as a ``requests`` error. With the JVM gone, h2o's other errors (H2OServerError, ...) are
    the death too. A TrainingError (ours: no model, nothing exportable) never is.
    """
    import requests
    from h2o.exceptions import H2OConnectionError, H2OError

    if isinstance(exc, TrainingError):
        return False
    if isinstance(exc, (H2OConnectionError, requests.RequestException, ConnectionError)):
        return True
    return jvm_gone and isinstance(exc, (H2OError, OSError))


@contextmanager
def _fail_fast_on_death(cloud: str, automl: Any) -> Iterator[None]:
    """While AutoML runs, make h2o give up on a dead cluster at once.

    Once a poll of a job has succeeded, h2o retries a failed one 30 times, 3 s apart
    (``H2OJob._query_job_status_safe``): a dead JVM would cost 90 s of the budget. A thread
    watches the JVM; once it is gone, clearing the job's ``job_poll_success`` makes the next
    failed poll raise H2OConnectionError.
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            job = getattr(automl, "_job", None)
            if job is not None and not _cloud_pids(cloud):
                job.job_poll_success = False
                return

    watcher = threading.Thread(target=watch, name=f"{cloud}-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


class H2OCluster:
    """A private, local H2O cluster for the duration of a ``with`` block.

    ``name`` is its cloud name once started. When the block is left no JVM of the cloud runs
    any more (shut down, or killed), and ``died`` says whether the JVM was already gone when
    the block ended with an error (killed for memory, crashed).

    The JVM gets ``start_timeout_secs`` to start (``engines.h2o.start_timeout_secs``). A
    start is tried again only when the JVM found its ports taken (its log says so); a JVM
    that was still starting at the limit, or that failed, is not (another try would wait
    as long again, or fail the same way): the TrainingError says which, with the JVM's own
    log line and the setting to change.
    """

    def __init__(self, nthreads: int, max_mem_size: str,
                 start_timeout_secs: float = START_TIMEOUT_SECS):
        self.nthreads = nthreads
        self.max_mem_size = max_mem_size
        self.start_timeout_secs = start_timeout_secs
        self.name = ""
        self.folders: _JvmFolders | None = None  # the running JVM's own temporary files
        self.died = False
        self.start_seconds = 0.0  # how long the JVM that runs took to start
        # set once the block is left: the thread that started the JVM (``WarmCluster``) may
        # end then (the JVM dies with the thread that launched it: _launching_jvm)
        self.released = threading.Event()

    def __enter__(self) -> H2OCluster:
        import h2o

        if self.name:  # started already (``WarmCluster``): this block takes it over
            return self
        h2o.no_progress()
        failure: _StartFailure | None = None
        for _ in range(PORT_ATTEMPTS):
            # A fresh cloud name per attempt: a JVM of a failed attempt that is still starting
            # would otherwise be joined by the next one, and both would exit.
            name = f"autokfp-{uuid.uuid4().hex[:8]}"
            launch = _Launch()
            folders = _JvmFolders.make()
            try:
                with _launching_jvm(self.start_timeout_secs) as launch:
                    h2o.init(ip="127.0.0.1", port=_free_port(), name=name,
                             nthreads=self.nthreads, max_mem_size=self.max_mem_size,
                             ice_root=folders.ice_root, jvm_custom_args=folders.java_options,
                             verbose=False, strict_version_check=False)
                folders.note_launch(launch)
                _record_jvm(h2o)
                self.name = name
                self.folders = folders
                self.start_seconds = round(time.monotonic() - launch.began, 2)
                log.info("local H2O cluster %s started in %.1fs (limit %gs)", name,
                         self.start_seconds, self.start_timeout_secs)
                return self
            except Exception as exc:  # noqa: BLE001 - h2o raises plain exceptions
                failure = _start_failure(exc, launch, name, self.start_timeout_secs,
                                         self.max_mem_size)
                folders.note_launch(launch)
                _kill_cloud_and_clean(name, folders)
                if not failure.port_taken:
                    raise failure.error from None
                log.info("the port of H2O cluster %s was taken meanwhile; starting on another",
                         name)
                time.sleep(1)
        assert failure is not None
        raise failure.error from None

    def load(self, frame: pd.DataFrame | FeatureFile, column_types: dict[str, str]) -> Any:
        """The training frame on the cluster, imported by the JVM (on this machine) itself
        (``h2o.import_file``) from Parquet, instead of an upload of the frame as CSV text
        through this process and the JVM's heap: a ``FeatureFile`` where it is, a pandas
        frame written to a temporary file first (removed once H2O has parsed it)."""
        import tempfile

        if isinstance(frame, FeatureFile):
            return import_parquet(str(Path(frame.path).resolve()), column_types)
        with tempfile.TemporaryDirectory(prefix="autokfp-h2o-") as folder:
            path = str(Path(folder) / "train.parquet")
            frame.to_parquet(path, index=False)
            return import_parquet(path, column_types)

    def run_job(self, automl: Any, job: Any) -> None:
        """Run ``job()`` (AutoML's training), giving up at once if the JVM dies."""
        with _fail_fast_on_death(self.name, automl):
            job()

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        import h2o

        self.died = exc is not None and not _cloud_pids(self.name)
        try:
            if not self.died and h2o.connection() is not None:
                h2o.cluster().shutdown(prompt=False)
        except Exception as error:  # noqa: BLE001 - shutting down must never mask the real error
            log.warning("H2O cluster shutdown failed: %s", error)
        if exc is None:
            # a clean exit: the JVM winds down while the model is packaged; it is reaped (and
            # killed if it lingers) in the background, and at the latest when Python exits
            _reap_in_background(self.name, self.folders)
        else:  # a failure or a restart: nothing of this cloud may outlive this point
            _kill_cloud_and_clean(self.name, self.folders, grace_secs=5)
        self.released.set()


class BorrowedCluster(H2OCluster):
    """A local cluster someone else started and ends (the run's warm refit cluster:
    ``h2o_refit_cluster``), joined for a ``with`` block as an ``H2OCluster`` of one's own:
    frames imported from local Parquet files, a dead JVM noticed at once. Leaving the block
    removes everything on it and leaves it running."""

    def __init__(self, url: str, name: str, nthreads: int, max_mem_size: str,
                 start_timeout_secs: float = START_TIMEOUT_SECS):
        super().__init__(nthreads, max_mem_size, start_timeout_secs)
        self.url = url
        self._name = name

    def connect(self) -> None:
        """Join it (raises when it does not answer or is not the cloud named)."""
        import h2o

        h2o.no_progress()
        h2o.connect(url=self.url, verbose=False, strict_version_check=False)
        cloud = h2o.cluster()
        if cloud.cloud_name != self._name or not cloud.cloud_healthy:
            with contextlib.suppress(Exception):
                h2o.connection().close()
            raise TrainingError(f"the H2O cluster at {self.url} is {cloud.cloud_name} "
                                f"(healthy: {cloud.cloud_healthy}), not {self._name}")
        self.name = self._name  # __enter__ takes a named cluster as started

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        import h2o

        self.died = exc is not None and not _cloud_pids(self.name)
        if not self.died:
            try:
                h2o.remove_all()
                h2o.connection().close()
            except Exception as error:  # noqa: BLE001 - its owner shuts it down anyway
                log.warning("could not clear the borrowed H2O cluster %s: %s", self.name, error)
        self.released.set()


class _SharedRefitCluster:
    """One local cluster for the refits of a ``refit_session``, as each refit's ``with``
    block: the first block starts it, leaving a block keeps it running, and the next one
    clears what the last left (its frames and models) before using it. A block that ends
    with the JVM gone (killed, crashed) ends the cluster as ``H2OCluster`` does: the next
    block starts a new one. ``close`` shuts it down."""

    def __init__(self, make: Callable[[], H2OCluster]) -> None:
        self._make = make
        self._cluster: H2OCluster | None = None

    def __enter__(self) -> H2OCluster:
        import h2o

        if self._cluster is None:
            cluster = self._make()
            self._cluster = cluster.__enter__()
        else:
            with contextlib.suppress(Exception):  # a clean slate, as a new cluster is
                h2o.remove_all()
        return self._cluster

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        cluster = self._cluster
        if exc is not None and cluster is not None and not _cloud_pids(cluster.name):
            self._cluster = None
            cluster.__exit__(exc_type, exc, traceback)

    def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.__exit__(None, None, None)


# the throwaway models that warm a fresh cluster: rows of a synthetic binary table, and the
# algorithms (AutoML's first ones, with 2-fold cross-validation as AutoML runs them). Each
# gets WARM_MODEL_SECS at most, and none starts once ``train`` wants the cluster, so the
# warm-up delays the search by one model's time limit at worst (under load 27 on the shared
# machine the four took 15, 15 and 21 s cold, with no limit).
WARM_ROWS = 400
WARM_ALGOS = ("glm", "gbm", "xgboost", "drf")
WARM_MODEL_SECS = 5.0


class WarmCluster:
    """A local H2O cluster started in a background thread, then warmed by a few throwaway
    models (``WARM_ALGOS`` on ``WARM_ROWS`` synthetic rows, 2-fold cross-validation),
    while the caller prepares its data. A fresh JVM runs its first AutoML cold (its code not
    yet compiled: on the shared 2-core machine a fresh cluster's first 30 s AutoML built 1
    model where a warm one built 4, docs/training.md), and its start (6-13 s) is wall time.

    ``take()`` stops the warm-up (no further throwaway model starts), waits for the start
    and the model under way, and hands over the running cluster (raising the TrainingError
    of a start that timed out or failed, which a second start would repeat; None after an
    unexpected error: the caller starts one as before); ``discard()`` shuts down a cluster nobody
    took. ``seconds`` holds the start, the warm-up (``warm_models``: how many ran) and how
    long the caller waited. The JVM is killed by the kernel when the thread that launched
    it ends (``_launching_jvm``), so the thread lives on, idle, until the
    cluster's block is left (``H2OCluster.released``)."""

    def __init__(self, nthreads: int, max_mem_size: str,
                 start_timeout_secs: float = START_TIMEOUT_SECS):
        self.cluster: H2OCluster | None = H2OCluster(nthreads, max_mem_size, start_timeout_secs)
        self.error: BaseException | None = None
        self.seconds: dict[str, float] = {}
        self._begun = time.monotonic()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._start, name="h2o-warm-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        try:
            cluster.__enter__()
        except BaseException as exc:  # noqa: BLE001 - handed to take()
            self.error = exc
            self._ready.set()
            return
        self.seconds["cluster_start"] = round(time.monotonic() - self._begun, 2)
        mark = time.monotonic()
        try:
            self.seconds["warm_models"] = float(_warm_up(self._stop))
        except Exception as exc:  # noqa: BLE001 - warming only saves time; AutoML runs anyway
            log.info("warming the H2O cluster failed (AutoML starts it cold): %s: %s",
                     type(exc).__name__, exc)
        self.seconds["warm_up"] = round(time.monotonic() - mark, 2)
        self._ready.set()
        cluster.released.wait()  # the JVM lives as long as this thread

    def take(self) -> H2OCluster | None:
        """The started cluster, once it is warm (None if it could not start)."""
        waiting = time.monotonic()
        self._stop.set()
        self._ready.wait()
        self.seconds["waited"] = round(time.monotonic() - waiting, 2)
        # what of the start and warm-up ran while the caller prepared its data
        self.seconds["overlapped"] = round(waiting - self._begun, 2)
        cluster, self.cluster = self.cluster, None
        if isinstance(self.error, TrainingError):
            # a JVM still starting at the limit, or one that failed: a second start would
            # wait as long again, or fail the same way (H2OCluster retries port races itself)
            raise self.error
        if self.error is not None:
            log.warning("the early H2O cluster did not start (%s: %s); starting one now",
                        type(self.error).__name__, self.error)
            return None
        return cluster

    def discard(self) -> None:
        """Shut down the cluster if nobody took it (the data preparation failed)."""
        self._stop.set()
        self._ready.wait()
        cluster, self.cluster = self.cluster, None
        if cluster is not None and cluster.name:
            cluster.__exit__(None, None, None)
        if cluster is not None or self.error is not None:
            self._thread.join()


def _warm_up(stop: threading.Event) -> int:
    """A few throwaway models on a small synthetic table, removed afterwards, until ``stop``
    is set; how many were trained."""
    import h2o
    import numpy as np
    from h2o.estimators import create_estimator

    if stop.is_set():  # train already waits: the upload alone took 16 s at load 44
        return 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(WARM_ROWS, 4))
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    table["e"] = rng.choice(["p", "q", "r"], WARM_ROWS)
    table["y"] = np.where(x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=WARM_ROWS) > 0, "yes", "no")
    frame = h2o.H2OFrame(table, column_types={"e": "enum", "y": "enum"},
                         destination_frame=f"autokfp_warm_{uuid.uuid4().hex[:8]}")
    models = []
    try:
        for algo in WARM_ALGOS:
            if stop.is_set():
                break
            params: dict[str, Any] = {"nfolds": 2, "seed": 0, "max_runtime_secs": WARM_MODEL_SECS,
                                      "keep_cross_validation_predictions": True}
            if algo != "glm":
                params.update({"ntrees": 5, "max_depth": 3})
            try:
                model = create_estimator(algo, **params)
                model.train(x=["a", "b", "c", "d", "e"], y="y", training_frame=frame)
            except Exception as exc:  # noqa: BLE001 - XGBoost may be unavailable here
                log.debug("warm-up %s skipped: %s", algo, exc)
                continue
            models.append(model)
    finally:
        for model in models:
            try:
                h2o.remove(model, cascade=True)
            except Exception:  # noqa: BLE001 - a leftover throwaway costs nothing
                pass
        h2o.remove(frame)
    return len(models)


def import_parquet(uri: str, column_types: dict[str, str]) -> Any:
    """A Parquet file imported by the H2O cluster itself, with the frame's column types:
    text and enum columns as categories (``enum``), the rest as numbers."""
    import h2o

    imported = h2o.import_file(uri, destination_frame=f"autokfp_{uuid.uuid4().hex[:8]}")
    for column, kind in column_types.items():
        if kind == "enum" and not imported[column].isfactor()[0]:
            imported[column] = imported[column].asfactor()
    return imported


class RemoteH2OCluster:
    """An existing (multi-node) H2O cluster, joined with ``h2o.connect`` for a ``with`` block.

    The training frame is written as Parquet under the spec's ``import_root`` and imported
    by the cluster itself (``h2o.import_file``: each node parses its share), never uploaded
    through this process. While AutoML runs a thread watches the cluster's health over REST;
    a node lost (H2O cannot continue on part of a cluster) cancels the job, and the training
    fails with ``failure()``'s message. Leaving the block removes what this run put on the
    cluster (frame, models) and the Parquet file, and leaves the cluster running: it is not
    ours to shut down.
    """

    def __init__(self, spec: Any, artifact_root: str | None = None):
        self.spec = spec
        self.url = spec.url
        self.name = ""
        self.folders: _JvmFolders | None = None  # the running JVM's own temporary files
        self.died = False
        self.lost = ""  # why the watcher gave up on the cluster
        self.size = 0
        self._frame: Any = None
        self._automl: Any = None
        # every AutoML this run started (the fallback GLM's too): their keys are removed
        self._projects: list[str] = []
        self._uri = ""
        self._artifact_root = artifact_root

    def __enter__(self) -> RemoteH2OCluster:
        import h2o

        h2o.no_progress()
        try:
            h2o.connect(url=self.url, verbose=False, strict_version_check=False)
            cloud = h2o.cluster()
            healthy, self.size, self.name = cloud.cloud_healthy, cloud.cloud_size, cloud.cloud_name
        except Exception as exc:  # noqa: BLE001 - h2o raises plain exceptions
            raise TrainingError(
                f"could not connect to the H2O cluster at {self.url} (training.h2o_cluster.url "
                f"or ConfigMap key AUTOKFP_H2O_CLUSTER_URL): {type(exc).__name__}: {exc}; check "
                "that the cluster is running and reachable from the training pod") from None
        if not healthy:
            raise TrainingError(f"the H2O cluster at {self.url} reports unhealthy nodes; restart "
                                "it (all its pods) before training on it")
        log.info("training on the H2O cluster %s at %s (%d nodes)", self.name, self.url, self.size)
        return self

    def load(self, frame: pd.DataFrame | FeatureFile, column_types: dict[str, str]) -> Any:
        """Write the frame as Parquet where the cluster reads (a ``FeatureFile`` copied there
        as it is), and let the cluster import it."""
        import io

        from autokfp import storage
        from autokfp.settings import Settings
        from autokfp.storage.stores import object_store_for

        root = self.spec.import_root or storage.join(
            self._artifact_root or Settings.from_env().artifact_root, "h2o-import")
        self._uri = storage.join(root, f"{uuid.uuid4().hex}.parquet")
        if "://" not in self._uri:
            self._uri = str(Path(self._uri).resolve())
        if isinstance(frame, FeatureFile):
            store = object_store_for(self._uri)
            if store is None:
                Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(frame.path, self._uri)
            else:
                with store.errors(self._uri):
                    store.put_file(Path(frame.path), self._uri)
        else:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            storage.write_bytes(self._uri, buffer.getvalue())
        try:
            imported = import_parquet(self._uri, column_types)
        except Exception as exc:  # noqa: BLE001
            raise TrainingError(
                f"the H2O cluster at {self.url} could not import {self._uri}: {exc}; every H2O "
                "node must be able to read training.h2o_cluster.import_root (a shared folder, "
                "or gs:// / s3:// with the nodes' credentials; for MinIO or another S3 endpoint "
                "each node also needs -Dsys.ai.h2o.persist.s3.endPoint=URL and "
                "-Dsys.ai.h2o.persist.s3.enable.path.style=true: see manifests/h2o/README.md)"
                ) from None
        self._frame = imported
        return imported

    def run_job(self, automl: Any, job: Any) -> None:
        """Run ``job()`` (AutoML's training) while a thread watches the cluster's health.

        H2O cannot finish a job once a node is gone, and its client would keep polling the
        surviving node until the budget ends: a lost node cancels the job and ends the wait
        at once (the polling thread is left to fail on its own).
        """
        import requests

        self._automl = automl
        if getattr(automl, "project_name", None):
            self._projects.append(str(automl.project_name))
        stop, finished = threading.Event(), threading.Event()
        outcome: list[BaseException] = []

        def lost(reason: str) -> None:
            self.lost = reason
            running = getattr(automl, "_job", None)
            if running is not None:
                running.job_poll_success = False  # a failed poll now raises, no retries
                try:
                    requests.post(f"{self.url}/3/Jobs/{running.job_key}/cancel", timeout=5)
                except requests.RequestException:
                    pass

        def check() -> str:
            """Why the cluster is broken, or '' (nodes unheard of for HEARTBEAT_SECS, unhealthy,
            or fewer than at the start). Heartbeats are compared with the freshest one, all
            as recorded by the answering node, so no clocks are compared across machines."""
            cloud = requests.get(f"{self.url}/3/Cloud", timeout=5).json()
            nodes = cloud.get("nodes", [])
            pings = [int(n.get("last_ping") or 0) for n in nodes]
            freshest = max(pings, default=0)
            silent = [n.get("h2o", "?") for n, ping in zip(nodes, pings)
                      if freshest - ping > HEARTBEAT_SECS * 1000]
            unhealthy = [n.get("h2o", "?") for n in nodes if not n.get("healthy", True)]
            if silent or unhealthy:
                return f"node(s) {', '.join(silent or unhealthy)} stopped answering"
            if not cloud.get("cloud_healthy", True):
                return "it reports itself unhealthy"
            if int(cloud.get("cloud_size", self.size)) < self.size:
                return f"it shrank from {self.size} to {cloud.get('cloud_size')} nodes"
            return ""

        def watch() -> None:
            silent_since: float | None = None
            while not stop.wait(1.0):
                try:
                    reason = check()
                    silent_since = None
                except (requests.RequestException, ValueError) as exc:
                    silent_since = silent_since or time.monotonic()
                    reason = ""
                    if time.monotonic() - silent_since > HEARTBEAT_SECS:
                        reason = f"its REST address stopped answering ({exc})"
                if reason:
                    lost(reason)
                    return

        def train() -> None:
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append(exc)
            finally:
                finished.set()

        watcher = threading.Thread(target=watch, name=f"{self.name}-watch", daemon=True)
        worker = threading.Thread(target=train, name=f"{self.name}-automl", daemon=True)
        watcher.start()
        worker.start()
        try:
            while not finished.wait(0.5):
                if self.lost:
                    raise self.failure(RuntimeError(self.lost))
        finally:
            stop.set()
            watcher.join()
        if self.lost:
            raise self.failure(outcome[0] if outcome else RuntimeError(self.lost))
        if outcome:
            raise outcome[0]

    def failure(self, exc: BaseException) -> TrainingError:
        """The error that ends a training whose cluster broke (no restart: not ours)."""
        why = self.lost or f"{type(exc).__name__}: {exc}"
        return TrainingError(
            f"the H2O cluster {self.name} at {self.url} failed during training: {why}. H2O "
            "cannot go on with part of a cluster: restart the whole cluster (all its pods) and "
            "run the training again. Nothing was trained to completion or registered; the "
            "champion is unchanged")

    def _remove_own_keys(self, attempts: int = 3) -> None:
        """Remove this run's keys only (the cluster and other runs' work stay). A busy cluster
        can time a removal out: what is left is looked up and removed again, twice at most."""
        import h2o

        projects = list(self._projects)
        for attempt in range(1, attempts + 1):
            try:
                if self._automl is not None:
                    h2o.remove(self._automl, cascade=True)
                    self._automl = None
                if self._frame is not None:
                    h2o.remove(self._frame)
                    self._frame = None
                # what every AutoML of the run made next to its models (leaderboard, session
                # keys; the first one's too when a fallback GLM replaced it)
                if projects:
                    for key in h2o.ls()["key"].tolist():
                        if any(project in str(key) for project in projects):
                            h2o.remove(str(key))
                return
            except Exception as error:  # noqa: BLE001 - cleaning up must never mask the result
                if attempt == attempts:
                    log.warning("could not remove this run's frames and models from the H2O "
                                "cluster %s: %s", self.url, error)
                else:
                    time.sleep(2.0 * attempt)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        import h2o

        from autokfp import storage

        if not self.lost:
            self._remove_own_keys()
        if self._uri:
            try:
                storage.delete(self._uri)
            except Exception as error:  # noqa: BLE001
                log.warning("could not delete the imported training file %s: %s", self._uri, error)
        try:
            h2o.connection().close()
        except Exception:  # noqa: BLE001, S110 - already closed or never opened
            pass


def _check_inputs(features: pd.DataFrame | FeatureFile, target: pd.Series, nfolds: int) -> None:
    if target.isna().any():
        raise TrainingError(f"the target has {int(target.isna().sum())} missing values; rows "
                            "without a label must be dropped before training")
    if len(features) < 10:
        raise TrainingError(f"H2O AutoML needs at least 10 training rows, got {len(features)}")
    if len(features) < 2 * nfolds:
        raise DataError(
            f"only {len(features)} labelled training rows for engines.h2o.nfolds={nfolds} "
            "cross-validation folds; add rows or lower engines.h2o.nfolds (at least 2 rows "
            "per fold)")


def _training_frame(features: pd.DataFrame | FeatureFile, target: pd.Series, task: str,
                    categorical: list[str]) -> tuple[pd.DataFrame | FeatureFile, dict[str, str], str]:
    """The frame H2O trains on (the features and the target as ``__target__``), its column
    types and the response column's name. A ``FeatureFile`` holds the target already."""
    response = TARGET_COLUMN
    if isinstance(features, FeatureFile):
        column_types = features.column_types()
        column_types[features.response] = "real" if task == "regression" else "enum"
        return features, column_types, features.response
    frame = features.copy()
    frame[response] = target.astype(str).values if task != "regression" else target.astype(float).values
    column_types = {c: "enum" for c in categorical}
    for col in features.columns:
        column_types.setdefault(col, "real")
    column_types[response] = "real" if task == "regression" else "enum"
    return frame, column_types, response


class H2OAutoMLEngine:
    """H2O AutoML behind the ``Engine`` interface."""

    name = "h2o"
    # the train step hands it the features as a Parquet file (``FeatureFile``) written batch
    # by batch, which the cluster imports itself: the rows are never in pandas whole
    reads_feature_files = True

    def __init__(self, settings: H2OSettings | None = None):
        self.settings = settings or H2OSettings()
        self.cluster: Any = None  # a config.H2OClusterSpec: train on that cluster
        self._warm: WarmCluster | None = None  # started by warm_start, taken by train
        self._warm_seconds: dict[str, float] = {}
        self._refits: _SharedRefitCluster | None = None  # refit_session's one cluster

    def configure_run(self, config: Any) -> None:
        """Take the run-level settings this engine needs: ``training.h2o_cluster`` (or the
        ConfigMap's ``AUTOKFP_H2O_CLUSTER_URL``)."""
        from autokfp.config import resolved_h2o_cluster

        # a training task reads TrainingSettings (h2o_cluster at the top), a whole RunConfig
        # has it under training
        spec = getattr(config, "h2o_cluster", None)
        if spec is None and hasattr(config, "training"):
            spec = config.training.h2o_cluster
        self.cluster = resolved_h2o_cluster(spec)

    def _new_cluster(self, budget: Any) -> Any:
        if self.cluster is not None:
            return RemoteH2OCluster(self.cluster)
        if self._refits is not None:  # a refit in refit_session: its one cluster
            return self._refits
        if self._warm is not None:  # started while the step prepared its rows
            warm, self._warm = self._warm, None
            self._warm_seconds = warm.seconds
            taken = warm.take()
            if taken is not None:
                return taken
        return H2OCluster(budget.nthreads, self.settings.max_mem_size,
                          self.settings.start_timeout_secs)

    @contextmanager
    def refit_session(self, budget: Any) -> Iterator[None]:
        """The refits inside share one local cluster (``_SharedRefitCluster``): started by
        the first, shut down when the block is left. The refit step fits the same recipe
        twice (on the training rows, then on every labelled row): one JVM start (28-37 s
        under load 24) instead of two; in a local run, the run's warm refit cluster
        (``_refit_cluster``). Nothing changes on a remote cluster."""
        if self.cluster is not None:
            yield
            return
        self._refits = _SharedRefitCluster(lambda: self._refit_cluster(budget))
        try:
            yield
        finally:
            refits, self._refits = self._refits, None
            refits.close()

    def _refit_cluster(self, budget: Any) -> H2OCluster:
        """The local run's warm refit cluster when it offers one with these settings
        (``h2o_refit_cluster.offered_cluster``: started while select, bias check and
        evaluation ran), else a new one."""
        from autokfp.training.h2o_refit_cluster import offered_cluster

        settings = self.settings
        offered = offered_cluster(int(budget.nthreads), settings.max_mem_size,
                                  settings.start_timeout_secs)
        if offered is not None:
            return offered  # type: ignore[no-any-return]
        return H2OCluster(budget.nthreads, settings.max_mem_size, settings.start_timeout_secs)

    @contextmanager
    def warm_start(self, budget: Any) -> Iterator[None]:
        """Start the local cluster and warm it (``WarmCluster``) while the block prepares
        the training rows; ``train`` inside the block takes it, so AutoML's clock starts on
        a running, warm JVM. Leaving the block shuts down a cluster ``train`` did not take.
        Nothing happens on a remote cluster or with ``warm_start: false``."""
        if self.cluster is not None or not self.settings.warm_start:
            yield
            return
        self._warm = WarmCluster(budget.nthreads, self.settings.max_mem_size,
                                 self.settings.start_timeout_secs)
        try:
            yield
        finally:
            warm, self._warm = self._warm, None
            if warm is not None:
                warm.discard()

    def train(
        self,
        features: pd.DataFrame | FeatureFile,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: Any,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult:
        import h2o

        settings = self.settings
        nfolds = settings.folds(budget.max_runtime_secs)
        _check_inputs(features, target, nfolds)
        begun = time.monotonic()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        frame, column_types, response = _training_frame(features, target, task, categorical)
        device = "gpu" if gpu_available() else "cpu"
        log.info("H2O AutoML on %d rows x %d features (%s, device %s, budget %ss)", len(frame),
                 len(features.columns), task, device, budget.max_runtime_secs)
        timings: dict[str, float] = {}
        run, deaths = self._train_with_restarts(
            begun, timings, frame, column_types, response, features, target, task, classes,
            budget, nfolds, sort_metric, workdir)
        timings["total"] = round(time.monotonic() - begun, 2)
        board, leader_id, algo, cv, oof = run["board"], run["leader"], run["algo"], run["cv"], run["oof"]
        nfolds, automl_secs, elapsed = run["nfolds"], run["automl_secs"], run["elapsed"]
        positions = run["positions"]
        if nfolds:
            cv_method = f"{nfolds}-fold cross-validation of the leader"
        else:
            cv_method = (f"blending: the leader on {len(positions)} held-out validation rows "
                         f"({VALIDATION_SHARE:.0%}, seed {budget.seed}; the table is too large "
                         "to cross-validate within the budget)")
        board.to_csv(workdir / "leaderboard.csv", index=False)
        info = {"engine": self.name, "leader": leader_id, "algo": algo, "device": device,
                "h2o_version": h2o.__version__, "train_seconds": round(elapsed, 2),
                "features": list(features.columns), "categorical": categorical, "nfolds": nfolds,
                "validation": "blending" if positions is not None else "cross_validation",
                "fitted_rows": run["fitted_rows"],
                "automl_secs": automl_secs, "seconds": timings,
                "warm_start": self._warm_seconds or None,
                "cluster_restarts": len(deaths), "cluster_deaths": deaths}
        (workdir / "engine.json").write_text(json.dumps(info, indent=2))
        log.info("H2O leader %s (%s) after %.1fs; cv %s; seconds %s", leader_id, algo, elapsed, cv,
                 timings)
        return EngineResult(
            engine=self.name, artifact_dir=workdir, leader=leader_id, leaderboard=board,
            cv_metrics=cv, device=device,
            holdout=_holdout_scores(oof, task, classes, len(target), positions),
            # blending: the validation rows are also the leaderboard's (they chose the leader)
            holdout_kind="out_of_fold" if nfolds else "validation",
            fitted_rows=run["fitted_rows"],
            params={"max_runtime_secs": budget.max_runtime_secs, "automl_secs": automl_secs,
                    "cv_method": cv_method,
                    "max_models": settings.max_models,
                    "nfolds": nfolds, "seed": budget.seed, "sort_metric": SORT_METRICS.get(sort_metric, "AUTO"),
                    **({} if nfolds else {"validation_fraction": VALIDATION_SHARE}),
                    "leader_algo": algo, "models_trained": len(board),
                    "cluster_restarts": len(deaths)},
        )

    def _train_with_restarts(self, begun: float, timings: dict[str, float],
                             frame: pd.DataFrame | FeatureFile,
                             column_types: dict[str, str], response: str,
                             features: pd.DataFrame | FeatureFile, target: pd.Series, task: str,
                             classes: list[str] | None, budget: Any, nfolds: int,
                             sort_metric: str, workdir: Path) -> tuple[dict[str, Any], list[str]]:
        """Start a cluster, train and export on it; once more on a fresh one if it died (at
        most ``max_restarts`` times, within what is left of the budget). Returns the run
        (``_automl_on``) and how each cluster that died ended; fills ``timings``."""
        max_restarts = self.settings.max_restarts
        deaths: list[str] = []  # how each cluster that died during training ended
        searched = 0.0  # search seconds already spent by clusters that died
        while True:  # start a cluster -> train -> export; once more on a fresh one if it died
            cluster = self._new_cluster(budget)
            attempt = time.monotonic()
            search_started: float | None = None
            try:
                with cluster:
                    timings["cluster_start"] = round(time.monotonic() - attempt, 2)
                    search_started = time.monotonic()
                    run = self._automl_on(cluster, frame, column_types, response, features, target,
                                          task, classes, budget, nfolds, sort_metric, workdir,
                                          searched)
                    timings.update(run.pop("timings"))
                    closing = time.monotonic()
                break
            except Exception as exc:
                if isinstance(cluster, RemoteH2OCluster):
                    if cluster.lost or _cluster_died(exc):
                        raise cluster.failure(exc) from exc
                    raise
                if not _cluster_died(exc, cluster.died):
                    raise
                deaths.append(f"{cluster.name}: {type(exc).__name__}: {exc}")
                if search_started is not None:
                    searched += time.monotonic() - search_started
                if len(deaths) > max_restarts:
                    raise self._died_too_often(exc, deaths) from exc
                log.warning("the H2O cluster %s died during training (%s: %s); training again on "
                            "a fresh cluster within the remaining %.0fs of the budget (AutoML gets "
                            "at least %ds; restart %d of at most %d)", cluster.name,
                            type(exc).__name__, exc,
                            max(0.0, budget.max_runtime_secs - searched),
                            MIN_AUTOML_SECS, len(deaths), max_restarts)
        timings["shutdown"] = round(time.monotonic() - closing, 2)
        if deaths:
            timings["lost_to_restarts"] = round(attempt - begun, 2)
        return run, deaths

    def _died_too_often(self, exc: Exception, deaths: list[str]) -> TrainingError:
        """The error when the cluster died more often than ``max_restarts`` allows."""
        settings = self.settings
        max_restarts = settings.max_restarts
        times = "once (" if len(deaths) == 1 else f"{len(deaths)} times (the last: "
        return TrainingError(
            f"the H2O cluster died {times}{type(exc).__name__}: {exc}) during "
            "training; its JVM is most often killed for using more memory than the node "
            f"gives it: raise engines.h2o.max_mem_size (now {settings.max_mem_size}) "
            "and the training task's memory limit above it, or train on fewer rows or "
            "features"
            + ("" if max_restarts else " (engines.h2o.max_restarts is 0: no restart)")
        )

    def _automl_on(self, cluster: H2OCluster | RemoteH2OCluster, frame: pd.DataFrame | FeatureFile,
                   column_types: dict[str, str],
                   response: str, features: pd.DataFrame | FeatureFile, target: pd.Series, task: str,
                   classes: list[str] | None, budget: Any, folds: int, sort_metric: str,
                   workdir: Path, searched: float = 0.0) -> dict[str, Any]:
        """Upload, run AutoML for what is left of the budget's search time (``searched``
        seconds were spent by clusters that died), export the leader's MOJO and read its
        cross-validation figures, all on the running ``cluster``. Blending mode's split is
        removed from the cluster however this ends (a shared remote cluster outlives the run,
        and its own cleanup knows only the training frame and the AutoML keys), unless the
        remote cluster was lost (a request to it can hang: its own cleanup is skipped too)."""
        split: list[_Parts] = []
        try:
            return self._search_on(cluster, frame, column_types, response, features, target,
                                   task, classes, budget, folds, sort_metric, workdir, searched,
                                   split)
        finally:
            if not getattr(cluster, "lost", ""):
                for parts in split:
                    parts.remove()

    def _search_on(self, cluster: H2OCluster | RemoteH2OCluster, frame: pd.DataFrame | FeatureFile,
                   column_types: dict[str, str], response: str,
                   features: pd.DataFrame | FeatureFile, target: pd.Series, task: str,
                   classes: list[str] | None, budget: Any, folds: int, sort_metric: str,
                   workdir: Path, searched: float, split: list[_Parts]) -> dict[str, Any]:
        """``_automl_on``'s work; a blending split it makes is appended to ``split``."""
        import h2o
        from h2o.automl import H2OAutoML

        timings: dict[str, float] = {}
        mark = time.monotonic()
        h2o_frame = cluster.load(frame, column_types)
        timings["upload"] = round(time.monotonic() - mark, 2)
        settings = self.settings
        # the budget, not a model count, ends the search (max_models is an optional cap)
        automl_secs = max(MIN_AUTOML_SECS, int(round(budget.max_runtime_secs - searched)))
        threads = _cluster_threads()
        parts: _Parts | None = None
        if settings.blends(len(frame), len(features.columns), automl_secs, threads):
            mark = time.monotonic()
            parts = _blending_parts(h2o_frame, _row_groups(target, task), budget.seed)
            split.append(parts)
            timings["split"] = round(time.monotonic() - mark, 2)
            nfolds = 0
            log.info("H2O AutoML validates by blending (%d rows x %d predictors for %ss on %d "
                     "threads is too large to cross-validate: every model would be fitted k + 1 "
                     "times): %d rows train, %d validate, %d blend", len(frame),
                     len(features.columns), automl_secs, threads, parts.rows[PART_TRAIN],
                     parts.rows[PART_VALID], parts.rows[PART_BLEND])
            frames = {"training_frame": parts.train, "validation_frame": parts.valid,
                      "blending_frame": parts.blend, "leaderboard_frame": parts.valid}
        else:
            nfolds = min(folds, max(2, len(frame) // 10))
            if nfolds < folds:
                log.warning("only %d training rows: H2O uses %d folds instead of "
                            "engines.h2o.nfolds=%d", len(frame), nfolds, folds)
            frames = {"training_frame": h2o_frame}
        common = {"seed": budget.seed, "nfolds": nfolds,
                  "sort_metric": SORT_METRICS.get(sort_metric, "AUTO"),
                  # the leader's out-of-fold scores: CV spread and calibration (blending: its
                  # predictions of the validation rows instead)
                  "keep_cross_validation_predictions": parts is None, "verbosity": None}

        def run(automl: Any) -> Any:
            cluster.run_job(automl, lambda: automl.train(
                x=list(features.columns), y=response, **frames))
            return automl

        started = time.monotonic()
        automl = run(H2OAutoML(
            max_runtime_secs=automl_secs, max_models=settings.max_models,
            include_algos=settings.include_algos,
            exclude_algos=None if settings.include_algos else ["DeepLearning"],
            project_name=f"autokfp_{uuid.uuid4().hex[:8]}", **common))
        if automl.leader is None:
            # A budget too small for this machine (or a busy node) ends AutoML before its
            # first model. Fall back to one quick GLM without a time limit rather than
            # return nothing; the leaderboard and the log say so.
            log.warning("H2O AutoML trained no model in %ss; training one GLM without a time "
                        "limit instead (raise budget.max_runtime_secs)", automl_secs)
            automl = run(H2OAutoML(max_models=1, include_algos=["GLM"],
                                   project_name=f"autokfp_{uuid.uuid4().hex[:8]}", **common))
        elapsed = time.monotonic() - started
        timings["automl"] = round(elapsed, 2)
        if automl.leader is None:
            raise TrainingError(f"H2O AutoML trained no model within {budget.max_runtime_secs}s; "
                                "raise budget.max_runtime_secs")
        mark = time.monotonic()
        board_frame = _leaderboard(cluster, automl, features, target, response, h2o_frame, task,
                                   nfolds, budget, sort_metric, settings.include_algos, parts)
        fallback_secs = 0.0
        if board_frame.nrows > automl.leaderboard.nrows:
            fallback_secs = time.monotonic() - mark
            timings["fallback_gbm"] = round(fallback_secs, 2)
        board = board_frame.as_data_frame(use_multi_thread=False)
        leader_id, _mojo = self._export_first_exportable(board, workdir)
        leader = h2o.get_model(leader_id)
        _write_recipe(leader, workdir)
        cv = _cv_metrics(leader, task, parts)
        # out-of-fold scores (blending: of the validation rows), fetched once: the CV spread
        # and the calibration use them
        positions = None if parts is None else parts.valid_positions
        oof = (_holdout_predictions(leader, task, classes) if parts is None
               else _validation_predictions(leader, parts.valid, task, classes))
        truth = target if positions is None else target.iloc[positions].reset_index(drop=True)
        cv.update(_cv_spread(leader, sort_metric, task, truth, classes, budget.seed, oof,
                             per_fold=parts is None))
        timings["export"] = round(time.monotonic() - started - elapsed - fallback_secs, 2)
        fitted = None
        if parts is not None:  # what the leader learnt from (an ensemble: its blending rows too)
            fitted = parts.rows[PART_TRAIN] + (
                parts.rows[PART_BLEND] if leader.algo == "stackedensemble" else 0)
        return {"board": board, "leader": leader_id, "algo": leader.algo, "cv": cv, "oof": oof,
                "positions": positions, "fitted_rows": fitted, "nfolds": nfolds,
                "automl_secs": automl_secs, "elapsed": elapsed, "timings": timings}

    @staticmethod
    def _export_first_exportable(board: pd.DataFrame, workdir: Path) -> tuple[str, Path]:
        import h2o

        errors = []
        for model_id in board["model_id"].tolist():
            model = h2o.get_model(model_id)
            try:
                exported = Path(model.download_mojo(path=str(workdir), get_genmodel_jar=False))
            except Exception as exc:  # noqa: BLE001 - try the next model on the board
                errors.append(f"{model_id}: {exc}")
                continue
            target = workdir / MOJO_FILE
            exported.replace(target)
            if errors:
                log.warning("leader(s) could not be exported as MOJO, used %s: %s", model_id, errors)
            return model_id, target
        raise TrainingError(f"no AutoML model could be exported as a MOJO: {errors}")

    def refit_seconds(self, artifact_dir: Path, trained_rows: int, rows: int
                      ) -> tuple[float, str] | None:
        """About how long ``refit`` of the model in ``artifact_dir`` takes on ``rows`` rows,
        its fit alone (no cluster start): the recipe's models' own fit times in the search
        (the leaderboard's ``training_time_ms``), scaled linearly by ``rows`` over the rows
        they were fitted on (``trained_rows``, the rows the search was given, when
        cross-validated; the blending split's training share when blended), a blended
        ensemble's base models times ``REFIT_BLEND_FOLDS`` (cross-validated in the refit: k
        fits on (k-1)/k of the rows and one on all). With the basis, for the reason a refit
        is or is not made. None when the folder does not record them (no recipe or
        leaderboard: a package from before they were kept). Measured on diamonds (session
        19): AutoML's times, taken under a loaded search, over-estimate the refit's fits. A
        stacked ensemble's base models with weight 0 are left out, as ``refit`` leaves them
        (``weighted_members``)."""
        folder = Path(artifact_dir)
        try:
            recipe = json.loads((folder / RECIPE_FILE).read_text())
            info = json.loads((folder / "engine.json").read_text())
            board = pd.read_csv(folder / "leaderboard.csv")
            times = dict(zip(board["model_id"].astype(str), board["training_time_ms"] / 1000.0))
            recipe, unweighted = weighted_members(recipe, folder / MOJO_FILE)  # what refit fits
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # blending: the leader learnt from the split's training share, an ensemble's
        # metalearner from its blending share too (``fitted_rows`` counts both); cross-
        # validated: from every row it was given
        base_rows = float(info.get("fitted_rows") or trained_rows)
        if info.get("validation") == "blending" and recipe.get("algo") == "stackedensemble":
            base_rows *= (1.0 - VALIDATION_SHARE - BLENDING_SHARE) / (1.0 - VALIDATION_SHARE)
        models = [recipe] + list(recipe.get("base_models") or [])
        if any(str(m.get("model_id")) not in times or not np.isfinite(times[str(m.get("model_id"))])
               for m in models) or base_rows <= 0:
            return None
        folds = REFIT_BLEND_FOLDS if recipe.get("algo") == "stackedensemble" \
            and _blended(recipe) else 1
        search = sum(times[str(m["model_id"])] for m in models)
        # a tree leader outside an ensemble is refitted without the folds its search time
        # holds (``recipe_params``): k fits on (k-1)/k of the rows and one on all, about k
        # fits' worth, of which the refit makes one
        lone = _refit_without_folds(recipe)
        seconds = sum(times[str(m["model_id"])] * (folds if m is not recipe else 1)
                      for m in models) / lone * rows / base_rows
        basis = (f"{len(models)} model(s) fitted in {search:.0f}s on {base_rows:.0f} rows in "
                 f"the search" + (f", the base models {folds}-fold cross-validated" if folds > 1
                                  else "")
                 + (f", refitted without its {lone} folds" if lone > 1 else "")
                 + (f", {len(unweighted)} base model(s) with weight 0 not refitted"
                    if unweighted else ""))
        return round(seconds, 1), basis

    def refit(
        self,
        artifact_dir: Path,
        features: pd.DataFrame | FeatureFile,
        target: pd.Series,
        task: str,
        classes: list[str] | None,
        categorical: list[str],
        budget: Any,
        sort_metric: str,
        workdir: Path,
    ) -> EngineResult:
        """The model in ``artifact_dir`` trained again, by its recipe (``recipe.json``: the
        leader's algorithm and actual parameters, a stacked ensemble's base models and
        metalearner too), on ``features``: no search, the same configuration on other rows.
        Each model gets ``budget.max_runtime_secs`` at most. Raises TrainingError when the
        folder holds no recipe (a package trained before recipes were kept)."""
        import h2o

        recipe_path = Path(artifact_dir) / RECIPE_FILE
        if not recipe_path.is_file():
            raise TrainingError(f"{recipe_path} is missing: the model was trained before H2O "
                                "recipes were kept, so its configuration cannot be refitted")
        recipe, dropped = weighted_members(json.loads(recipe_path.read_text()),
                                           Path(artifact_dir) / MOJO_FILE)
        _check_inputs(features, target, int(recipe.get("params", {}).get("nfolds") or 2))
        if dropped:
            log.info("refit of the stacked ensemble %s: %d of its %d base models carry weight "
                     "in its metalearner; the %d with weight 0 (%s) are not refitted",
                     recipe.get("model_id"), len(recipe["base_models"]),
                     len(recipe["base_models"]) + len(dropped), len(dropped), ", ".join(dropped))
        begun = time.monotonic()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        frame, column_types, response = _training_frame(features, target, task, categorical)
        log.info("H2O refit of %s (%s) on %d rows", recipe.get("model_id"), recipe.get("algo"),
                 len(frame))
        with self._new_cluster(budget) as cluster:
            h2o_frame = cluster.load(frame, column_types)
            model = _fit_recipe(cluster, recipe, list(features.columns), response, h2o_frame,
                                budget.max_runtime_secs)
            exported = Path(model.download_mojo(path=str(workdir), get_genmodel_jar=False))
            exported.replace(workdir / MOJO_FILE)
            _write_recipe(model, workdir)
            _keep_refit_out_of_fold(model, task, classes, len(target), workdir)
        seconds = round(time.monotonic() - begun, 2)
        info = {"engine": self.name, "leader": model.model_id, "algo": model.algo,
                "h2o_version": h2o.__version__, "refit_of": recipe.get("model_id"),
                "fitted_rows": len(target), "train_seconds": seconds}
        if dropped:  # the gated ensemble's members its metalearner gave weight 0
            info["base_models_not_refitted"] = dropped
        (workdir / "engine.json").write_text(json.dumps(info, indent=2))
        return EngineResult(
            engine=self.name, artifact_dir=workdir, leader=model.model_id,
            leaderboard=pd.DataFrame({"model_id": [model.model_id]}),
            params={"refit_of": recipe.get("model_id"), "leader_algo": model.algo,
                    "refit_seconds": seconds,
                    **({"refit_base_models": f"{len(recipe['base_models'])} of "
                        f"{len(recipe['base_models']) + len(dropped)} (weight 0: not refitted)"}
                       if dropped else {})},
            fitted_rows=len(target))

    def refit_out_of_fold(self, artifact_dir: Path) -> bool:
        """Whether ``refit`` of the model in ``artifact_dir`` keeps out-of-fold predictions of
        every row it is fitted on (``estimate.REFIT_OOF_FILE``): a stacked ensemble whose
        metalearner is cross-validated (AutoML's: ``metalearner_nfolds`` 3, on its base
        models' out-of-fold predictions), so the ensemble's own out-of-fold predictions come
        with the fit the refit makes anyway. The refit step then judges the recipe by them
        instead of fitting it a second time on the training rows (``steps.refit_model``)."""
        try:
            recipe = json.loads((Path(artifact_dir) / RECIPE_FILE).read_text())
        except (OSError, ValueError):
            return False
        return bool(recipe.get("base_models")) and _metalearner_folds(recipe) > 0

    def load_scorer(self, artifact_dir: Path, task: str, classes: list[str] | None) -> MojoScorer:
        path = Path(artifact_dir) / MOJO_FILE
        if not path.exists():
            raise TrainingError(f"H2O model artifact {path} is missing; the model folder is incomplete")
        return MojoScorer(path, task, classes)


# a leader whose cross-validated figure is within this of the trivial model's (R² 0, AUC
# 0.5, the class prior's log loss) learnt nothing: its search was starved
NO_BETTER_MARGIN = 0.02


def _no_better_than_baseline(cv: dict[str, float], task: str, target: pd.Series) -> bool:
    """Whether cross-validated metrics ``cv`` (``_cv_metrics``) are no better than predicting
    the training mean (R² ≤ 0.02) or the class prior (AUC ≤ 0.52; a multiclass log loss
    within 2% of the prior's)."""
    if task == "regression":
        return cv.get("cv_r2") is not None and cv["cv_r2"] <= NO_BETTER_MARGIN
    if task == "binary":
        return cv.get("cv_auc") is not None and cv["cv_auc"] <= 0.5 + NO_BETTER_MARGIN
    shares = target.value_counts(normalize=True).to_numpy(dtype="float64")
    prior = float(-(shares * np.log(shares)).sum())
    return cv.get("cv_logloss") is not None and cv["cv_logloss"] >= (1 - NO_BETTER_MARGIN) * prior


def _leaderboard(cluster: Any, automl: Any, features: pd.DataFrame | FeatureFile,
                 target: pd.Series, response: str, h2o_frame: Any, task: str, nfolds: int,
                 budget: Any, sort_metric: str, include_algos: list[str] | None,
                 parts: _Parts | None = None) -> Any:
    """AutoML's leaderboard (an H2OFrame, every column). When its leader is no better than
    the mean or the class prior in cross-validation, every model was cut short (on a loaded
    node: a GLM at its first, intercept-only penalty, trees stopped before their first
    splits) or could not learn the table (a GLM alone on interactions): one GBM with H2O's
    defaults (``_fallback_gbm``), given the whole budget, joins the board, unless
    ``include_algos`` leaves GBM out. A search that found anything better never pays it."""
    import h2o

    board = h2o.automl.get_leaderboard(automl, extra_columns="ALL")
    cv = _cv_metrics(automl.leader, task, parts)
    if not _no_better_than_baseline(cv, task, target) or (
            include_algos is not None and "GBM" not in include_algos):
        return board
    log.warning("H2O AutoML's leader %s is no better than the %s in cross-validation (%s): "
                "training one GBM with H2O's defaults (at most %ss) to stand beside it",
                automl.leader.model_id, "mean" if task == "regression" else "class prior", cv,
                budget.max_runtime_secs)
    fallback = _fallback_gbm(cluster, features, response, h2o_frame, nfolds, budget, parts)
    # (a row's prediction time needs a leaderboard frame, which a cross-validated search has
    # none of)
    return h2o.make_leaderboard([automl, fallback],
                                leaderboard_frame=None if parts is None else parts.valid,
                                sort_metric=SORT_METRICS.get(sort_metric, "AUTO"),
                                extra_columns=["training_time_ms", "algo"])


def _fallback_gbm(cluster: Any, features: pd.DataFrame | FeatureFile, response: str,
                  h2o_frame: Any, nfolds: int, budget: Any, parts: _Parts | None = None) -> Any:
    """One GBM with H2O's default parameters, validated as AutoML's models are (cross-validated,
    its out-of-fold predictions kept; or, blending, on the training rows with the validation
    rows for early stopping), given ``budget.max_runtime_secs``."""
    from h2o.estimators import H2OGradientBoostingEstimator

    if parts is None:
        validated: dict[str, Any] = {"nfolds": nfolds, "fold_assignment": "Modulo",
                                     "keep_cross_validation_predictions": True}
        frames = {"training_frame": h2o_frame}
    else:
        validated = {}
        frames = {"training_frame": parts.train, "validation_frame": parts.valid}
    model = H2OGradientBoostingEstimator(
        model_id=f"GBM_fallback_{uuid.uuid4().hex[:8]}", seed=budget.seed,
        max_runtime_secs=budget.max_runtime_secs, **validated)
    cluster.run_job(model, lambda: model.train(x=list(features.columns), y=response, **frames))
    return model


class _Parts:
    """Blending mode's seeded split of the training rows: the H2O frames of each part, the
    validation rows' positions in the training frame, and each part's row count."""

    def __init__(self, train: Any, valid: Any, blend: Any, valid_positions: np.ndarray,
                 rows: dict[int, int]):
        self.train, self.valid, self.blend = train, valid, blend
        self.valid_positions = valid_positions
        self.rows = rows
        self.frames: list[Any] = []  # every frame the split made on the cluster

    def remove(self) -> None:
        """Remove the split's frames from the cluster (the models are exported already)."""
        import h2o

        for frame in self.frames:
            try:
                h2o.remove(frame)
            except Exception as exc:  # noqa: BLE001 - a leftover frame costs only memory
                log.debug("could not remove a blending part: %s", exc)


def _row_groups(target: pd.Series, task: str) -> np.ndarray:
    """What the blending split is stratified by: each row's class (one group for regression)."""
    if task == "regression":
        return np.zeros(len(target), dtype=int)
    return target.astype(str).to_numpy()


def _part_codes(groups: np.ndarray, seed: int) -> np.ndarray:
    """Each training row's part (PART_TRAIN, PART_VALID, PART_BLEND), seeded and stratified by
    ``groups`` (the class of each row; one group for regression): the validation rows are
    VALIDATION_SHARE of every class (at least one row of each class of two or more), the
    blending rows BLENDING_SHARE. Drawn by ``validation_ranks``, as AutoKeras draws its
    validation rows: with the run's seed this engine's validation rows are among AutoKeras's,
    so selection compares the two on the same out-of-sample rows."""
    # here, not at the top: every process that parses a config imports this module (the
    # engine registry), and validation imports scikit-learn's metrics and SciPy
    from autokfp.modeling.validation import validation_ranks

    ranks = validation_ranks(groups, seed)
    codes = np.full(len(ranks), PART_TRAIN, dtype="int8")
    codes[ranks < VALIDATION_SHARE] = PART_VALID
    codes[(ranks >= VALIDATION_SHARE) & (ranks < VALIDATION_SHARE + BLENDING_SHARE)] = PART_BLEND
    return codes


def _blending_parts(h2o_frame: Any, groups: np.ndarray, seed: int) -> _Parts:
    """The training frame split into its three parts on the cluster (the part of each row
    drawn here, so the validation rows' positions are known: their predictions are the
    leader's out-of-sample scores, as AutoKeras's validation rows are its)."""
    import h2o

    rows = len(groups)
    codes = _part_codes(groups, seed)
    counts = {code: int((codes == code).sum()) for code in (PART_TRAIN, PART_VALID, PART_BLEND)}
    if min(counts.values()) < 1:
        raise TrainingError(f"too few rows ({rows}) to blend; set engines.h2o.validation: "
                            "cross_validation")
    marks = h2o.H2OFrame(pd.DataFrame({PART_COLUMN: codes.astype("int64")}),
                         column_types=["int"],
                         destination_frame=f"autokfp_parts_{uuid.uuid4().hex[:8]}")
    if int(marks.nrows) != int(h2o_frame.nrows):
        h2o.remove(marks)  # an uploaded frame is kept until removed (a shared cluster too)
        raise TrainingError(f"the training frame on the cluster has {h2o_frame.nrows} rows, "
                            f"{rows} were expected")
    marked = h2o_frame.cbind(marks)
    column = marked[PART_COLUMN]
    train, valid, blend = (marked[column == code] for code in (PART_TRAIN, PART_VALID, PART_BLEND))
    parts = _Parts(train, valid, blend, np.flatnonzero(codes == PART_VALID), counts)
    parts.frames = [train, valid, blend, marked, marks]
    return parts


def _cluster_threads() -> int:
    """The threads of the connected H2O cluster, all nodes together (what H2O's rule counts)."""
    import h2o

    try:
        return max(1, sum(int(node.get("nthreads") or 0) for node in h2o.cluster().nodes))
    except Exception:  # noqa: BLE001 - an older server without the figure: this machine's
        return os.cpu_count() or 1


def _cv_metrics(model: Any, task: str, parts: _Parts | None = None) -> dict[str, float]:
    """The model's cross-validated metrics (blending: on the validation rows) as ``cv_<name>``."""
    try:
        perf = (model.model_performance(xval=True) if parts is None
                else model.model_performance(test_data=parts.valid))
    except Exception:  # noqa: BLE001 - not every model keeps cross-validation metrics
        return {}
    if perf is None:
        return {}
    metrics: dict[str, float] = {}
    names = {"binary": ("auc", "logloss"), "multiclass": ("logloss",), "regression": ("rmse", "mae", "r2")}
    for name in names[task]:
        try:
            value = getattr(perf, name)()
        except Exception:  # noqa: BLE001
            continue
        if value is not None:
            metrics[f"cv_{name}"] = float(value)
    return metrics


def _holdout_predictions(model: Any, task: str, classes: list[str] | None,
                         chunk_rows: int = OOF_CHUNK_ROWS) -> pd.DataFrame | None:
    """The model's out-of-fold predictions of the training rows, in their order (None when
    it kept none): for classifiers the probability column of each class in ``classes``
    (named as H2O names them), for regression ``predict``.

    Only those columns are downloaded (not H2O's ``predict`` label column of a classifier,
    text in pandas), ``chunk_rows`` rows at a time into one float64 array: the download
    holds one chunk, not the whole frame as CSV and pandas (at 8M training rows the whole
    frame took about 1.6 GB in this process; the array is 8 bytes a row and class).

    A stacked ensemble keeps none of its own; AutoML cross-validates its metalearner on the
    base models' out-of-fold predictions (the level-one frame, one row per training row), so
    the metalearner's out-of-fold predictions are the ensemble's."""
    try:
        holdout = model.cross_validation_holdout_predictions()
        if holdout is None and getattr(model, "algo", "") == "stackedensemble":
            holdout = model.metalearner().cross_validation_holdout_predictions()
        return _download_scores(holdout, task, classes, chunk_rows)
    except Exception as exc:  # noqa: BLE001 - a model without them must not cost the run
        log.debug("no out-of-fold predictions for %s: %s", getattr(model, "model_id", model), exc)
        return None


def _validation_predictions(model: Any, valid: Any, task: str, classes: list[str] | None,
                            chunk_rows: int = OOF_CHUNK_ROWS) -> pd.DataFrame | None:
    """The model's predictions of the validation rows (blending mode), in their order, as
    ``_holdout_predictions`` gives the out-of-fold ones (None when they cannot be had)."""
    try:
        return _download_scores(model.predict(valid), task, classes, chunk_rows)
    except Exception as exc:  # noqa: BLE001 - a model without them must not cost the run
        log.debug("no validation predictions for %s: %s", getattr(model, "model_id", model), exc)
        return None


def _download_scores(holdout: Any, task: str, classes: list[str] | None,
                     chunk_rows: int) -> pd.DataFrame | None:
    """An H2O prediction frame's score columns (``predict``, or each class's probability) in
    pandas, ``chunk_rows`` rows at a time; None for no frame."""
    if holdout is None:
        return None
    wanted = ["predict"] if task == "regression" else _class_columns(holdout, classes)
    if not wanted:
        return None
    rows = int(holdout.nrows)
    values = np.empty((rows, len(wanted)), dtype="float64")
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        part = holdout[start:stop, wanted].as_data_frame(use_multi_thread=False)
        if len(part) != stop - start:
            raise ValueError(f"rows {start}-{stop} of the out-of-fold predictions came back "
                             f"as {len(part)} rows")
        values[start:stop] = part[wanted].to_numpy(dtype="float64")
    return pd.DataFrame(values, columns=wanted)


def _holdout_scores(predicted: pd.DataFrame | None, task: str, classes: list[str] | None,
                    rows: int, positions: np.ndarray | None = None) -> tuple[Any, Any] | None:
    """``EngineResult.holdout`` from the out-of-fold predictions of all ``rows`` training
    rows, or (blending) the predictions of the rows at ``positions``: (row positions, n x k
    class scores in ``classes`` order, or n values); None when they do not fit."""
    where = np.arange(rows) if positions is None else np.asarray(positions)
    if predicted is None or len(predicted) != len(where):
        return None
    if task == "regression":
        return where, predicted["predict"].to_numpy(dtype="float64")
    columns = _class_columns(predicted, classes)
    if columns is None:
        return None
    return where, predicted[columns].to_numpy(dtype="float64")


def _class_columns(predicted: Any, classes: list[str] | None) -> list[str] | None:
    """The prediction frame's (pandas or H2O) probability column of each class, in
    ``classes`` order: H2O names them by the label, or ``p<label>`` when the label is a
    number ("p0", "p1")."""
    columns = []
    for label in classes or []:
        name = next((c for c in (label, f"p{label}") if c in predicted.columns), None)
        if name is None:
            return None
        columns.append(name)
    return columns or None


def _cv_spread(model: Any, metric: str, task: str, target: pd.Series, classes: list[str] | None,
               seed: int, predicted: pd.DataFrame | None = None,
               per_fold: bool = True) -> dict[str, float]:
    """The primary metric's spread over folds (``cv_<metric>_sd``), where H2O can tell.

    Models with fold models report a per-fold summary (mean, sd). A stacked ensemble has
    none; its out-of-fold predictions (``predicted``, fetched here when not given) give a
    bootstrap spread instead, as do the predictions of the validation rows in blending mode
    (``per_fold`` false; ``target`` holds those rows' labels).
    """
    names = {"auc": "auc", "logloss": "logloss", "rmse": "rmse", "mae": "mae", "r2": "r2",
             "accuracy": "accuracy", "f1": "f1"}
    try:
        summary = model.cross_validation_metrics_summary() if per_fold else None
        if summary is not None:
            table = summary.as_data_frame()
            table = table.set_index(table.columns[0])
            row = names.get(metric)
            if row in table.index and "sd" in table.columns:
                return {f"cv_{metric}_sd": float(table.loc[row, "sd"])}
    except Exception as exc:  # noqa: BLE001 - not every model keeps per-fold metrics
        log.debug("no per-fold metrics for %s: %s", getattr(model, "model_id", model), exc)
    try:
        import numpy as np

        from autokfp.modeling.validation import metric_spread

        if predicted is None:
            predicted = _holdout_predictions(model, task, classes)
        if predicted is None:
            return {}
        if task == "regression":
            truth = target.to_numpy(dtype="float64")
            scores = predicted["predict"].to_numpy(dtype="float64")
        else:
            labels = list(classes or [])
            truth = np.array([labels.index(str(v)) for v in target])
            scores = predicted[_class_columns(predicted, labels)].to_numpy(dtype="float64")
        _value, spread = metric_spread(metric, truth, scores, task, samples=100, seed=seed)
        return {f"cv_{metric}_sd": spread} if spread == spread else {}
    except Exception as exc:  # noqa: BLE001 - a missing spread must not cost the model
        log.debug("no out-of-fold predictions for %s: %s", getattr(model, "model_id", model), exc)
        return {}


register_engine(EngineSpec(
    name="h2o", engine=H2OAutoMLEngine, settings=H2OSettings, title="H2O AutoML", default=True,
    legacy_budget_keys={"max_models": "max_models", "nfolds": "nfolds",
                        "max_mem_size": "max_mem_size", "h2o_max_restarts": "max_restarts",
                        "include_algos": "include_algos"}))


def _recipe(model: Any) -> dict[str, Any]:
    """What ``refit`` needs to train ``model`` again: its algorithm and actual parameters
    (the run-bound ones left out), and a stacked ensemble's base models' recipes."""
    import h2o

    params = {}
    chosen: dict[str, float] = {}
    for key, value in (model.actual_params or {}).items():
        if key in _RUN_BOUND_PARAMS or value is None:
            continue
        if isinstance(value, (str, int, float, bool)) or (
                isinstance(value, list) and all(isinstance(v, (str, int, float, bool))
                                                for v in value)):
            params[key] = value
    if model.algo == "glm" and params.get("lambda_search"):
        # the chosen mix of L1 and L2 (alpha), and the penalty's *search*, not its value: the
        # penalty that cross-validation picks shrinks as rows are added, so a penalty chosen
        # on the gated model's rows over-regularises the refit on more of them (wine, 102 ->
        # 133 rows: the gated lambda 0.051 scored log loss 0.105 on the test rows, the search
        # on all 133 rows 0.021). The path is the new rows' own (from their lambda_max); on
        # the gated model's rows the same search, folds and seed give the same model.
        # The settings H2O derives from the rows when left at their defaults (the lambda
        # path, max_iterations, lambda_min_ratio, the tolerances, the solver) go back to their
        # defaults too: the gated rows' max_iterations cut the refit's search short of its
        # best penalty (breast_cancer, 113 -> 426 rows: 47 iterations, lambda 0.026 against
        # the search's own 0.0039).
        output = model._model_json.get("output", {})
        for key, spec in (getattr(model, "params", None) or {}).items():
            if (key in params and key not in ("alpha", "lambda_search") and isinstance(spec, dict)
                    and spec.get("input") == spec.get("default")):
                params.pop(key)
        params.pop("lambda", None)  # the gated rows' path
        if output.get("lambda_best") is not None:  # for the record: not a setting
            chosen["gate_lambda"] = float(output["lambda_best"])
        if output.get("alpha_best") is not None:
            params["alpha"] = [float(output["alpha_best"])]
    if model.algo in ("gbm", "drf", "xgboost"):
        # the trees it has, not those it was asked for: AutoML's time limit can stop a model
        # early, and the gated model is the one with those trees
        built = _built_trees(model)
        if built:
            params["ntrees"] = built
    recipe: dict[str, Any] = {"model_id": model.model_id, "algo": model.algo, "params": params,
                              **chosen}
    if model.algo == "stackedensemble":
        bases = (model.actual_params or {}).get("base_models") or []
        recipe["base_models"] = [_recipe(h2o.get_model(base["name"] if isinstance(base, dict)
                                                       else str(base))) for base in bases]
    return recipe


def weighted_members(recipe: dict[str, Any], mojo: Path) -> tuple[dict[str, Any], list[str]]:
    """A stacked ensemble's recipe with only the base models its metalearner weights, and the
    ids of those it left out; any other recipe as it is.

    AutoML's metalearner (``AUTO``: a GLM with non-negative weights and an L1 share) gives
    many members of an AllModels ensemble weight 0: Males (session 21) weighted 10 of 29,
    and the refit fitted all 29 twice (their 3-fold cross-validation included) for the 19
    that change nothing. Which members carry weight is H2O's own record: its ensemble MOJO
    (``model.zip``, the gated package's) lists as ``base_model<i>`` only the members it
    scores with (``isUsefulBaseModel``: a GLM metalearner's coefficients, every class's, not
    all 0; with another metalearner every member), next to ``base_models_num``, all of
    them. The refit's metalearner then learns from the weighted members' out-of-fold
    predictions: on the gated model's rows the same convex problem without inputs whose
    weight was 0 at its optimum, so the same weights where its penalty is the same (its
    default penalty follows the inputs' largest gradient, which may move); on every
    labelled row a member left out might have earned a weight. Both are what the held-out
    check judges (``steps.refit_model``). When the MOJO cannot be read, lists no member or
    every member, the recipe is kept whole."""
    bases = list(recipe.get("base_models") or [])
    if recipe.get("algo") != "stackedensemble" or not bases:
        return recipe, []
    try:
        with zipfile.ZipFile(mojo) as archive:
            ini = archive.read("model.ini").decode("utf-8", "replace")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return recipe, []
    entries = dict(re.findall(r"^(base_model\d+|base_models_num)\s*=\s*(.*?)\s*$", ini,
                              flags=re.MULTILINE))
    listed = {value for key, value in entries.items() if key != "base_models_num"}
    ids = [str(base.get("model_id")) for base in bases]
    if (entries.get("base_models_num") != str(len(bases)) or not listed
            or not listed <= set(ids) or len(listed) == len(ids)):
        return recipe, []
    kept = [base for base in bases if str(base.get("model_id")) in listed]
    return {**recipe, "base_models": kept}, [i for i in ids if i not in listed]


def _built_trees(model: Any) -> int | None:
    """How many trees (per class) ``model`` has, from its model summary; None if unknown."""
    try:
        summary = model._model_json["output"]["model_summary"]
        column = list(summary.col_header).index("number_of_trees")
        return int(float(summary.cell_values[0][column]))
    except Exception:  # noqa: BLE001 - the requested count stays
        return None


def _keep_refit_out_of_fold(model: Any, task: str, classes: list[str] | None, rows: int,
                            workdir: Path) -> None:
    """The refitted model's out-of-fold predictions of its ``rows`` rows, in their order, at
    ``workdir / REFIT_OOF_FILE`` (raw scores, as ``holdout.npz`` keeps them; no labels: the
    refit step has them); nothing when it kept none (a model without folds)."""
    from autokfp.modeling.estimate import OUT_OF_FOLD, REFIT_OOF_FILE, save_holdout

    held = _holdout_scores(_holdout_predictions(model, task, classes), task, classes, rows)
    if held is not None:
        positions, scores = held
        save_holdout(workdir, positions, scores, np.full(len(positions), np.nan),
                     kind=OUT_OF_FOLD, name=REFIT_OOF_FILE)


def _write_recipe(model: Any, workdir: Path) -> None:
    """``recipe.json`` next to the MOJO; a recipe that cannot be read costs the refit only."""
    try:
        (Path(workdir) / RECIPE_FILE).write_text(json.dumps(_recipe(model), indent=2))
    except Exception as exc:  # noqa: BLE001 - the model itself is exported already
        log.warning("the leader's recipe could not be kept, so it cannot be refitted after the "
                    "champion gate: %s: %s", type(exc).__name__, exc)


def _fit_recipe(cluster: Any, recipe: dict[str, Any], x: list[str], response: str, frame: Any,
                max_runtime_secs: float, base_model: bool = False, folds: int = 0) -> Any:
    """Train ``recipe`` (base models first for a stacked ensemble) on ``frame``.
    ``base_model``: a stacked ensemble's base model (it keeps its cross-validation, whose
    predictions its metalearner learns from); ``folds``: such a base model's recipe had none
    (a blended ensemble's), so it is cross-validated with this many folds, its predictions
    kept."""
    from h2o.estimators import create_estimator
    from h2o.exceptions import H2OTypeError

    params = recipe_params(recipe, base_model=base_model)
    if folds:
        params.update(nfolds=folds, fold_assignment="Modulo",
                      keep_cross_validation_predictions=True)
    # Neither is cut at the per-model time limit (the refit step's own timeout bounds them):
    # a GLM's penalty search, which cut short stops on a large penalty, the over-regularised
    # model the search is there to avoid (capped, the gate-rows reproduction failed once at
    # load 30-40); nor a tree model's fixed trees, which cut short are another model (issue
    # 17: a GBM leader's refit on the gated model's own 1,600 rows, its 3-fold CV and main
    # model under the budget's 15 s at load ~20, scored AUC 0.8322 against its 0.8542).
    searched = recipe["algo"] == "glm" and params.get("lambda_search")
    fixed = _fixed_trees(recipe["algo"], params)
    params["max_runtime_secs"] = 0.0 if searched or fixed else float(max_runtime_secs)
    if recipe["algo"] == "stackedensemble":
        # built by blending (its base models kept no cross-validation predictions): the
        # metalearner needs predictions of rows the base models did not learn from. Blending
        # again (base models on 80% of the rows, the metalearner on 20%) would keep a fifth
        # of the rows from the base models that are nearly all of the ensemble (diamonds:
        # 40,455 rows, its GBM weighted 0.997-1.002, RMSE 570-578 on the suite's test rows),
        # so the base models are fitted on every row, cross-validated, and the metalearner
        # learns from their out-of-fold predictions (565-569; H2O AutoML alone 563):
        # docs/training.md, "Refit for serving", session 19
        folds = REFIT_BLEND_FOLDS if _blended(recipe) else 0
        if folds:
            log.info("refit of the blended ensemble %s: base models on all %d rows, "
                     "%d-fold cross-validated for the metalearner", recipe.get("model_id"),
                     frame.nrow, folds)
        bases = [_fit_recipe(cluster, base, x, response, frame, max_runtime_secs,
                             base_model=True, folds=folds)
                 for base in recipe.get("base_models", [])]
        params["base_models"] = [base.model_id for base in bases]
    estimator = None
    while estimator is None:
        try:
            estimator = create_estimator(recipe["algo"], **params)
        except H2OTypeError as exc:
            # an actual value the client will not take back as a setting (GLM's link
            # "multinomial"): that setting is left at its default, which gave that value
            rejected = re.search(r"Argument `(\w+)`", str(exc))
            if rejected is None or rejected.group(1) not in params:
                raise
            log.info("refit of %s: %s left at its default (%s)", recipe.get("model_id"),
                     rejected.group(1), exc)
            params.pop(rejected.group(1))
    fitted = estimator
    cluster.run_job(fitted, lambda: fitted.train(x=x, y=response, training_frame=frame))
    built = _built_trees(fitted) if fixed else None
    if fixed and built is not None and built < fixed:
        raise TrainingError(f"the refit of {recipe.get('model_id')} built {built} of its "
                            f"{fixed} trees, so it is not the gated configuration")
    return fitted


# a tree model's refit scores itself every this many times its trees: never before its last
# tree, which H2O always scores (``recipe_params``)
REFIT_SCORE_INTERVAL_TREES = 10
# tree models whose recipe fixes the trees they have (``_recipe``: the built ones)
TREE_ALGOS = frozenset({"gbm", "drf", "xgboost"})
# what a recipe's cross-validation settings are, left out with it
_CV_PARAMS = ("nfolds", "fold_assignment", "keep_cross_validation_predictions",
              "keep_cross_validation_models", "keep_cross_validation_fold_assignment")


def _fixed_trees(algo: str, params: dict[str, Any]) -> int:
    """The trees a tree model's recipe fixes (0 for other models)."""
    return int(params.get("ntrees") or 0) if algo in TREE_ALGOS else 0


def _refit_without_folds(recipe: dict[str, Any]) -> int:
    """The folds a recipe's search fit had and its refit drops (``recipe_params`` outside an
    ensemble: a tree model's), 1 when none."""
    params = recipe.get("params") or {}
    folds = int(params.get("nfolds") or 0)
    return folds if folds >= 2 and _fixed_trees(str(recipe.get("algo")), params) else 1


def recipe_params(recipe: dict[str, Any], base_model: bool = False) -> dict[str, Any]:
    """The estimator settings of one recipe model, as the client takes them back.

    A stacked ensemble AutoML built has metalearner ``AUTO``: a GLM with non-negative
    weights. Its actual parameters record what that resolved to, ``glm``, and a plain GLM
    metalearner lacks the constraint: diamonds' blended best-of-family ensemble (GBM, a
    2-tree DRF, a 5-tree XGBoost, GLM) refitted with ``glm`` on the gated rows scored RMSE
    2,066 on the test rows against the gated model's 562, and 569 with ``AUTO`` (session
    15). So an ensemble's ``glm`` metalearner without settings of its own is fitted as
    ``AUTO`` again.

    A tree model (GBM, DRF, XGBoost) is fitted with the trees its recipe has (the gated
    model's, which cross-validation or AutoML's time limit chose) and no early stopping, and
    outside a stacked ensemble (``base_model``) without its cross-validation: its folds
    would only fit k more models, and with early stopping on they chose fewer trees than
    the recipe's (the refit's main model gets the folds' mean). The model is the same: H2O
    fits the main model on every row with the same seed whatever the folds. It is scored
    once, after its last tree (``REFIT_SCORE_INTERVAL_TREES``): the scores in between only
    fed the early stopping it no longer has."""
    params = dict(recipe["params"])
    if trees := _fixed_trees(str(recipe.get("algo")), params):
        params["stopping_rounds"] = 0
        # scored once, at the end, not every ``score_tree_interval`` trees (AutoML's 5):
        # with its trees fixed and no early stopping nothing reads the scoring history (the
        # fold models' scoring of their held-out rows included). A small saving, measured
        # ABBA in one warm JVM (3-fold, JVM CPU-s): GBM on diamonds' 40,455 rows 20.4 ->
        # 18.4, XGBoost on 12,000 of them 37.0 -> 35.7; the model and its cross-validation
        # predictions identical (docs/training.md, "Refit for serving", session 20)
        params["score_tree_interval"] = trees * REFIT_SCORE_INTERVAL_TREES
        if not base_model:
            for key in _CV_PARAMS:
                params.pop(key, None)
    if "lambda" in params:  # the client's name for it ("lambda" is a Python keyword)
        params["lambda_"] = params.pop("lambda")
    if (recipe.get("algo") == "stackedensemble"
            and str(params.get("metalearner_algorithm", "")).lower() == "glm"
            and not params.get("metalearner_params")):
        params["metalearner_algorithm"] = "AUTO"
    if _metalearner_folds(recipe):
        # the metalearner's out-of-fold predictions kept (AutoML keeps them, its recipe does
        # not say so): the ensemble's own, which the refit step judges the refit by
        # (``refit_out_of_fold``). The model is the same: measured on a 3-member ensemble,
        # the same coefficients and predictions (max difference 0), non_negative still set
        params["metalearner_params"] = {"keep_cross_validation_predictions": True}
    return params


def _metalearner_folds(recipe: dict[str, Any]) -> int:
    """A stacked ensemble's metalearner folds (``metalearner_nfolds``, AutoML's 3) when its
    recipe sets no metalearner settings of its own (AutoML's ensembles), else 0."""
    params = recipe.get("params") or {}
    if recipe.get("algo") != "stackedensemble" or params.get("metalearner_params"):
        return 0
    folds = int(params.get("metalearner_nfolds") or 0)
    return folds if folds >= 2 else 0


# a blended ensemble's refit: its base models' cross-validation folds (AutoML's own under a
# small budget), whose out-of-fold predictions its metalearner learns from
REFIT_BLEND_FOLDS = SMALL_BUDGET_FOLDS


def _blended(recipe: dict[str, Any]) -> bool:
    """Whether a stacked ensemble's recipe was built by blending: its base models kept no
    cross-validation predictions (a cross-validated ensemble needs them all)."""
    bases = recipe.get("base_models") or []
    return bool(bases) and not all(
        int((base.get("params") or {}).get("nfolds") or 0) >= 2
        and (base.get("params") or {}).get("keep_cross_validation_predictions")
        for base in bases)
