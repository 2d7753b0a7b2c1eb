"""A warm H2O cluster for a local run's refit step, started while the tasks after training run.

The refit step (``steps/refit_model``) fits the gated H2O recipe twice in a child process of
its own, which started its own JVM: on Males (session 20, idle) 5.7 s of the 40.4 s step
before the first fit, and that first fit paid the fresh JVM's warm-up (16.7 s on 2,617 rows
against 12.3 s for the second fit on 3,270, the same recipe in the same JVM). The local
runner (``autokfp.edge.local``) opens ``refit_clusters`` for a run that trains with H2O and
may refit: every task's environment names a state file (``REFIT_CLUSTER_ENV``), and once
select-model has chosen an H2O model (as the bias check starts: the searches never share the
machine with it, and an AutoKeras champion gets none) ``start()`` runs this module as a
process of its own, which starts a local cluster exactly as the refit would (``H2OCluster``:
the run's ``budget.nthreads`` and ``engines.h2o.max_mem_size``), writes its address to the
state file and warms it with the training task's throwaway models (``_warm_up``) until the
refit takes it. The bias check and the evaluation are single-threaded: the JVM starts on the
core they leave free. A model the gate then keeps as challenger is not refitted: its
cluster was started for nothing (about 10 CPU-seconds) and ends with the run.

The refit child (``H2OAutoMLEngine.refit_session``) takes it (``offered_cluster``): it waits
for a cluster still starting, connects, and leaves it running with nothing of its own on it
(``BorrowedCluster``); the runner ends it with the run. No state file named (a pod, a
notebook, ``AUTOKFP_H2O_REFIT_CLUSTER=0``), a cluster that failed to start, one started with
other settings, or one that does not answer: the refit starts its own, as before. The
cluster's settings are the refit's own and its frames are imported from the same Parquet
files, so the refit fits the same models (``tests/engine/training/test_h2o_refit_cluster.py``
compares the predictions with those of a refit on a cluster of its own).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autokfp.settings import environ_set, switched_off

log = logging.getLogger(__name__)

# the state file of a local run's warm refit cluster (JSON: ``state`` starting, ready or
# failed; ``url``, ``name`` and the settings once ready); 0 beforehand: none is started
REFIT_CLUSTER_ENV = "AUTOKFP_H2O_REFIT_CLUSTER"
# the refit child leaves this file next to the state file when it takes the cluster: the
# warm-up starts no further throwaway model then
TAKEN_SUFFIX = ".taken"
# the runner writes the process's id to this file next to the state file once it runs: a
# refit waiting on a cluster still starting stops waiting when that process is gone
PID_SUFFIX = ".pid"
# how long the runner gives the process to shut its cluster down before killing it (more
# than the 20 s the process itself waits for the JVM: ``wait_for_shutdowns``)
CLOSE_GRACE_SECS = 30.0


def wanted(config: dict[str, Any] | None) -> tuple[int, str, float] | None:
    """The cluster a run's refit would start (``budget.nthreads``, ``engines.h2o``'s
    ``max_mem_size`` and ``start_timeout_secs``), or None when the run cannot refit an H2O
    model on a local cluster: H2O not among its engines, ``training.refit_for_serving:
    never``, a remote cluster (``training.h2o_cluster``), or a config this cannot read (a run
    form's, filled in by the pipeline's first task)."""
    from autokfp.config import parse_config

    if not isinstance(config, dict) or not config:
        return None
    try:
        cfg = parse_config(config, origin="the run's config")
    except Exception:  # noqa: BLE001 - the pipeline's first task reports a bad config
        return None
    if "h2o" not in cfg.engines or cfg.training.refit_for_serving == "never":
        return None
    if cfg.training.h2o_cluster is not None:
        return None
    settings = cfg.engines.get("h2o")
    return (int(cfg.budget.nthreads), str(getattr(settings, "max_mem_size", "")),
            float(getattr(settings, "start_timeout_secs", 300.0)))


@contextlib.contextmanager
def refit_clusters(config: dict[str, Any] | None,
                   log_path: Path | None = None) -> Iterator[RefitCluster | None]:
    """While open, ``REFIT_CLUSTER_ENV`` names a state file the run's tasks see; the
    handle's ``start()`` (the runner's, once the engines are done) starts the cluster's
    process, its output to ``log_path``. Closing shuts it down. Yields None when the run
    would not refit on a local H2O cluster (``wanted``) or when switched off."""
    settings = wanted(config)
    if settings is None or switched_off(os.environ.get(REFIT_CLUSTER_ENV)):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="autokfp-refit-cluster-"))  # 0700: this user's
    handle = RefitCluster(folder / "cluster.json", *settings, log_path=log_path)
    try:
        with environ_set(REFIT_CLUSTER_ENV, str(handle.state)):
            yield handle
    finally:
        handle.close()
        shutil.rmtree(folder, ignore_errors=True)


class RefitCluster:
    """The runner's handle on the warm refit cluster's process."""

    def __init__(self, state: Path, nthreads: int, max_mem_size: str, start_timeout_secs: float,
                 log_path: Path | None = None) -> None:
        self.state = state
        self.nthreads, self.max_mem_size = nthreads, max_mem_size
        self.start_timeout_secs = start_timeout_secs
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (once). The state file says ``starting`` before it runs, so a
        refit that comes first waits for it instead of starting a JVM of its own."""
        if self._process is not None:
            return
        _write_state(self.state, {"state": "starting"})
        output = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "autokfp.training.h2o_refit_cluster", str(self.state),
                 str(os.getpid()), str(self.nthreads), self.max_mem_size,
                 str(self.start_timeout_secs)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        except OSError:
            _write_state(self.state, {"state": "failed", "error": "its process did not start"})
            raise
        finally:
            if output is not None:
                output.close()
        from autokfp.storage.local import atomic_write

        atomic_write(self.state.with_name(self.state.name + PID_SUFFIX),
                     str(self._process.pid).encode())

    def close(self) -> None:
        """Shut the cluster down (SIGTERM: the process shuts its JVM down and exits; killed
        after ``CLOSE_GRACE_SECS``, its JVM with it)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.terminate()
        try:
            process.wait(CLOSE_GRACE_SECS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """``state`` at ``path``, replaced whole (a reader never sees half of it)."""
    from autokfp.storage.local import atomic_write

    atomic_write(path, json.dumps(state).encode())


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def offered_cluster(nthreads: int, max_mem_size: str, start_timeout_secs: float) -> Any:
    """(in the refit child) The run's warm refit cluster, connected (``BorrowedCluster``),
    when the environment names one started with these settings; None otherwise (the caller
    starts its own). A cluster still starting is waited for up to ``start_timeout_secs``.
    Taken once: a later call (a refit after the JVM died) gets None."""
    from autokfp.training.h2o_automl import BorrowedCluster

    named = os.environ.get(REFIT_CLUSTER_ENV, "")
    if not named or switched_off(named):
        return None
    path = Path(named)
    taken = path.with_name(path.name + TAKEN_SUFFIX)
    if not path.exists() or taken.exists():
        return None
    taken.touch()  # no further throwaway model starts on it
    asked = time.monotonic()
    deadline = asked + start_timeout_secs
    state = _read_state(path)
    while state.get("state") == "starting" and time.monotonic() < deadline:
        if not _process_runs(path):
            state = _read_state(path)  # it may have said why, or been ready, before it ended
            if state.get("state") == "starting":
                state = {"state": "failed", "error": "its process ended before the cluster "
                         "was ready (its log is beside the run's)"}
            break
        time.sleep(0.2)
        state = _read_state(path)
    if state.get("state") != "ready":
        log.info("the run's warm H2O refit cluster is not there (%s): starting one",
                 state.get("error") or state.get("state") or "no state")
        return None
    if (int(state.get("nthreads", -2)), str(state.get("max_mem_size"))) != (nthreads,
                                                                          max_mem_size):
        log.info("the run's warm H2O refit cluster has other settings (%s threads, %s) than "
                 "this refit (%s, %s): starting one", state.get("nthreads"),
                 state.get("max_mem_size"), nthreads, max_mem_size)
        return None
    cluster = BorrowedCluster(str(state["url"]), str(state["name"]), nthreads, max_mem_size,
                              start_timeout_secs)
    try:
        cluster.connect()
    except Exception as exc:  # noqa: BLE001 - the refit starts its own cluster then
        log.info("the run's warm H2O refit cluster %s does not answer (%s: %s): starting one",
                 state.get("name"), type(exc).__name__, exc)
        return None
    # "waited": what the refit's fits spent on the cluster, as a cluster's start
    # (scripts/benchmark_task_startup.py takes it out of the refit's fit seconds)
    log.info("refitting on the run's warm H2O cluster %s: waited %.1fs for it (its JVM "
             "started in %.1fs, ready %.1fs before the refit took it; %s throwaway models "
             "warmed it)", state["name"], time.monotonic() - asked,
             float(state.get("start_seconds") or 0.0),
             max(0.0, time.time() - float(state.get("ready_at") or time.time())),
             state.get("warm_models", "no"))
    return cluster


def _process_runs(path: Path) -> bool:
    """Whether the cluster's process (its id in the file the runner writes beside the state
    file once it started it) still runs; True while that file is not there yet."""
    from autokfp.lifeline import pid_alive

    try:
        pid = int(path.with_name(path.name + PID_SUFFIX).read_text())
    except (OSError, ValueError):
        return True
    return pid_alive(pid)


class _StopOrTaken:
    """``_warm_up``'s stop: set by SIGTERM, or once the refit took the cluster."""

    def __init__(self, stop: threading.Event, taken: Path) -> None:
        self._stop, self._taken = stop, taken

    def is_set(self) -> bool:
        return self._stop.is_set() or self._taken.exists()


def main(argv: list[str]) -> int:
    """``python -m autokfp.training.h2o_refit_cluster STATE PARENT_PID NTHREADS MAX_MEM
    START_TIMEOUT``: start the cluster, say so in STATE, warm it until the refit takes it,
    then keep it until SIGTERM (shut down) or until the parent is gone (the JVM dies with
    the thread that launched it: ``_launching_jvm``)."""
    import h2o

    from autokfp.lifeline import watch_parent
    from autokfp.training.h2o_automl import H2OCluster, _warm_up, wait_for_shutdowns

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    state_path, parent = Path(argv[0]), int(argv[1])
    nthreads, max_mem_size, timeout = int(argv[2]), argv[3], float(argv[4])
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command ends it (a terminal's Ctrl-C)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # the command gone (kill -9 included): its state folder removed, this process ended
    # within a poll interval, and the JVM with the thread that launched it
    watch_parent(parent, on_orphaned=lambda: shutil.rmtree(state_path.parent,
                                                           ignore_errors=True))
    cluster = H2OCluster(nthreads, max_mem_size, timeout)
    try:
        cluster.__enter__()
    except Exception as exc:  # noqa: BLE001 - the refit starts its own and reports its error
        _write_state(state_path, {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    ready = {"state": "ready", "url": h2o.connection().base_url, "name": cluster.name,
             "nthreads": nthreads, "max_mem_size": max_mem_size, "pid": os.getpid(),
             "start_seconds": cluster.start_seconds, "ready_at": time.time()}
    _write_state(state_path, ready)
    try:
        taken = _StopOrTaken(stop, state_path.with_name(state_path.name + TAKEN_SUFFIX))
        warmed = _warm_up(taken)  # type: ignore[arg-type]  # is_set() is all it asks
        _write_state(state_path, {**ready, "warm_models": warmed})
        log.info("warm refit cluster %s: %d throwaway models", cluster.name, warmed)
    except Exception as exc:  # noqa: BLE001 - warming only saves time
        log.info("warming the refit cluster failed: %s: %s", type(exc).__name__, exc)
    while not stop.wait(1.0):
        pass
    cluster.__exit__(None, None, None)
    wait_for_shutdowns()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
