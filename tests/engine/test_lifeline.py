"""The children a task starts and waits for (``lifeline.start_child``: an engine's, Evidently's)
are forked from a local task the warm worker forked, as long as it runs no library's thread
pool; otherwise, or when switched off, they are new interpreters (a child forked from a
process whose TensorFlow or OpenMP pools had run hung in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.engine.test_lifeline"

# what the warm worker does (imports, so numpy's BLAS pool runs in it; then forks a task),
# and what the task then starts through run_isolated (lifeline.start_child)
SCRIPT = r"""
import json, os, sys, types
import numpy
from autokfp import lifeline
from autokfp.training.isolation import run_isolated

sys.modules["imported_by_the_worker"] = types.ModuleType("imported_by_the_worker")
# a library's thread in the worker (as numpy's BLAS or Arrow's jemalloc start at import)
import ctypes
libc = ctypes.CDLL(None)
libc.pthread_create(ctypes.byref(ctypes.c_ulong()), None, libc.pause, None)
worker_threads = lifeline.native_threads()
pid = os.fork()
if pid:
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
out = {"worker_threads": worker_threads}
probe = "tests.engine.test_lifeline:probe"
out["not_allowed"] = run_isolated(probe, {})
lifeline.allow_fork()
out["task_threads"] = lifeline.native_threads()
out["allowed"] = run_isolated(probe, {})
os.environ["AUTOKFP_ENGINE_FORK"] = "0"
out["switched_off"] = run_isolated(probe, {})
del os.environ["AUTOKFP_ENGINE_FORK"]
import pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"a": list(range(10000))}), sys.argv[2])
pq.read_table(sys.argv[2], use_threads=True)  # Arrow's pool: threads Python did not start
out["pool_threads"] = lifeline.native_threads()
out["after_a_pool"] = run_isolated(probe, {})
with open(sys.argv[1], "w") as handle:
    json.dump(out, handle)
os._exit(0)
"""


def probe() -> dict:
    """In the child: whether it is a fork of its parent (it has what the worker imported)."""
    return {"forked": "imported_by_the_worker" in sys.modules, "pid": os.getpid()}


def test_a_task_forked_from_the_worker_forks_its_children_until_a_pool_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUTOKFP_ENGINE_FORK"}
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(tmp_path / "t.parquet")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["worker_threads"] > 0
    # a fork keeps only the forking thread: the task starts without the worker's pools
    assert found["task_threads"] == 0
    assert found["not_allowed"]["forked"] is False  # a process nobody vouched for
    assert found["allowed"]["forked"] is True
    assert found["switched_off"]["forked"] is False  # AUTOKFP_ENGINE_FORK=0
    assert found["pool_threads"] > 0
    assert found["after_a_pool"]["forked"] is False


def test_native_threads_counts_only_threads_python_did_not_start():
    from autokfp import lifeline

    before = lifeline.native_threads()
    assert before is not None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert lifeline.native_threads() == before  # a Python thread is not a library's pool
    finally:
        stop.set()
        thread.join()


# in a new interpreter that imported nothing with a pool of its own (no other native thread
# can come or go meanwhile): a native thread that calls into Python, and the counts
CALLED_PYTHON = r"""
import ctypes, json, threading
from autokfp import lifeline

before = lifeline.native_threads()
libc = ctypes.CDLL(None)
called, stop = threading.Event(), threading.Event()

def body(_):
    threading.current_thread()  # as logging does for record.threadName
    called.set()
    stop.wait()

callback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(body)
thread_id = ctypes.c_ulong()
assert libc.pthread_create(ctypes.byref(thread_id), None, callback, None) == 0
assert called.wait(10)
dummy = any(isinstance(t, threading._DummyThread) for t in threading.enumerate())
print(json.dumps({"before": before, "during": lifeline.native_threads(), "dummy": dummy}))
stop.set()
libc.pthread_join(thread_id, None)
"""


def test_a_native_thread_that_called_python_still_counts():
    """A library's thread that calls into Python (an Arrow IO thread reading through fsspec,
    a JVM thread calling a JPype proxy, logging's threadName) gets a ``_DummyThread`` with
    its native id: it is still a thread Python did not start."""
    done = subprocess.run([sys.executable, "-c", CALLED_PYTHON], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"before": 0, "during": 1, "dummy": True}


# a process that imported H2O's engine module (as a training task does, parsing its config)
# starts its engine's child forked; the child shuts a cluster down and returns at once
REAPED = r"""
import json, os, sys, types
import autokfp.training.h2o_automl
sys.modules["imported_by_the_parent"] = types.ModuleType("imported_by_the_parent")
from autokfp.training.isolation import run_isolated
os.environ["AUTOKFP_ENGINE_FORK"] = "1"
print(json.dumps(run_isolated("tests.engine.test_lifeline:shut_a_cluster_down",
                              {"scratch": sys.argv[1]})))
"""


def shut_a_cluster_down(scratch: str) -> dict:
    """In the engine's child: a cluster shut down, its reaper (slow, as a JVM winding down
    is) left to the end of the process, as after a clean training."""
    import time

    from autokfp.training import h2o_automl

    h2o_automl._kill_cloud = lambda name, grace_secs=0.0: time.sleep(1.0)
    h2o_automl._reap_in_background("autokfp-gone", h2o_automl._JvmFolders(scratch))
    return {"forked": "imported_by_the_parent" in sys.modules, "pid": os.getpid()}


def test_a_forked_engine_child_still_waits_for_its_h2o_reapers(tmp_path):
    """``forked_child`` drops the parent's atexit handlers, and a module imported before the
    fork registered its own only in the parent: H2O's ``wait_for_shutdowns`` must still run
    in the child, else a JVM's 150 MB of temporary files outlive every clean training."""
    scratch = tmp_path / "autokfp-h2o-jvm"
    (scratch / "java").mkdir(parents=True)
    (scratch / "java" / "libxgboost4j_gpu.so").write_bytes(b"x")
    env = {k: v for k, v in os.environ.items() if k != "AUTOKFP_ENGINE_FORK"}
    done = subprocess.run([sys.executable, "-c", REAPED, str(scratch)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["forked"] is True
    assert not scratch.exists()  # the reaper ran to its end before the child exited


CONCAT = r"""
import json, os, sys
from pathlib import Path
import numpy as np, pandas as pd
from autokfp import lifeline
from autokfp.steps.refit_model import _concat_parquet

folder = Path(sys.argv[1])
pd.DataFrame({"a": np.arange(50_000), "b": np.linspace(0, 1, 50_000)}).to_parquet(folder / "x.parquet")
pid = os.fork()  # as the worker forks the refit task
if pid:
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
rows = _concat_parquet([str(folder / "x.parquet")] * 2, folder / "y.parquet")
(folder / "out.json").write_text(json.dumps({"rows": rows, "threads": lifeline.native_threads()}))
os._exit(0)
"""


def test_the_refit_joins_its_rows_without_a_thread_pool_so_its_child_can_be_forked(tmp_path):
    """refit-model concatenates the training and test rows just before it starts its engine
    child: read with Arrow's pool, the task had two native threads and the child was a new
    interpreter (session 14's run log)."""
    import pandas as pd

    done = subprocess.run([sys.executable, "-c", CONCAT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((tmp_path / "out.json").read_text())
    assert found == {"rows": 100_000, "threads": 0}
    joined, one = pd.read_parquet(tmp_path / "y.parquet"), pd.read_parquet(tmp_path / "x.parquet")
    pd.testing.assert_frame_equal(joined, pd.concat([one, one], ignore_index=True))



def _started(command: str, **popen) -> subprocess.Popen:
    """``sh -c command`` once it has printed its first line (its traps are set by then)."""
    process = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, **popen)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def test_stop_process_asks_first_and_kills_after_the_grace() -> None:
    import time

    from autokfp.lifeline import ForkedChild, pid_alive, stop_process, stop_processes

    polite = _started("echo ready; exec sleep 300")
    assert stop_process(polite, grace=30) == -15  # ended on SIGTERM, without waiting 30 s
    assert stop_process(polite) == -15  # already stopped: its status, nothing sent
    deaf = [_started("trap '' TERM; echo ready; exec sleep 300") for _ in range(4)]
    started = time.monotonic()
    assert stop_processes(deaf, grace=1.0) == [-9] * 4
    # one deadline for all (1.0 s), not one each (4 x 1.0 s): four processes, so the bound
    # leaves 2 s for the kills and reaping on a loaded machine (was two processes and 1.9 s)
    assert 1.0 <= time.monotonic() - started < 3.0
    # group=True: the leader of a session and what it started (as mlflow server's workers)
    leader = _started("sleep 300 & echo ready; echo $!; wait", start_new_session=True)
    worker = int(leader.stdout.readline())
    assert stop_process(leader, grace=5, group=True) == -15
    deadline = time.monotonic() + 5  # signalled with its group: gone once it is scheduled
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(worker)
    # a fork (lifeline.start_child's ForkedChild) is stopped the same way
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(writer, b"r")
        time.sleep(300)
        os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"r"
    os.close(reader)
    assert stop_process(ForkedChild(pid), grace=0.5) == -9
    assert not pid_alive(pid)


def _note_sigterm_then_wait(path: str, deaf: bool) -> None:
    """A multiprocessing child: notes a SIGTERM in ``path`` (and ends on it unless ``deaf``)."""
    import signal
    import time

    def noted(number, frame) -> None:
        Path(path).write_text("SIGTERM")
        if not deaf:
            os._exit(15)

    signal.signal(signal.SIGTERM, noted)
    Path(path + ".ready").write_text("")
    time.sleep(300)


def test_stop_process_stops_a_multiprocessing_child_and_kills_at_once_without_grace(
        tmp_path) -> None:
    """ingest's forked children are ``multiprocessing.Process`` objects, stopped by the same
    helper: asked first, killed after the grace, reaped (``exitcode`` set); grace 0 sends
    SIGKILL alone (a hung child may never act on SIGTERM)."""
    import multiprocessing
    import time

    from autokfp.lifeline import pid_alive, stop_process

    fork = multiprocessing.get_context("fork")
    statuses = {}
    for name, deaf, grace in (("polite", False, 30), ("deaf", True, 0.5), ("now", False, 0)):
        path = str(tmp_path / name)
        child = fork.Process(target=_note_sigterm_then_wait, args=(path, deaf), daemon=True)
        child.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(path + ".ready") and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        statuses[name] = (stop_process(child, grace=grace), child.exitcode,
                          os.path.exists(path), time.monotonic() - started)
        assert not pid_alive(child.pid) and not child.is_alive()
    assert statuses["polite"][:3] == (15, 15, True), statuses  # its own exit, well before 30 s
    assert statuses["polite"][3] < 10, statuses
    assert statuses["deaf"][:3] == (-9, -9, True), statuses  # asked, then killed
    assert statuses["deaf"][3] >= 0.5, statuses
    assert statuses["now"][:3] == (-9, -9, False), statuses  # never asked


def _within(seconds: float, check) -> bool:
    """Whether ``check()`` comes true within ``seconds``, polled every 20 ms."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _stalled_within(pid: int, seconds: float, process: subprocess.Popen) -> float | None:
    """Polls ``lifeline.Stall(pid, seconds)`` as ingest does until ``process`` ends: when it
    first said stalled (seconds from the start), None if never."""
    import time

    from autokfp import lifeline

    started = time.monotonic()  # before Stall's own clock starts, so never after it
    stall = lifeline.Stall(pid, seconds)
    while process.poll() is None:
        if stall.stalled():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def _stalled_while_watched(pid: int, seconds: float, watch: float,
                           process: subprocess.Popen) -> float | None:
    """Polls ``lifeline.Stall(pid, seconds)`` for ``watch`` seconds while ``process`` runs:
    when it first said stalled, None if never (an error if the process ended first: the
    watch proved nothing)."""
    import time

    from autokfp import lifeline

    started = time.monotonic()
    stall = lifeline.Stall(pid, seconds)
    while time.monotonic() - started < watch:
        assert process.poll() is None, "the child ended before the watch did"
        if stall.stalled():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def test_a_child_waiting_on_a_slow_query_is_not_stalled_but_one_on_a_lock_is(
        postgres_server) -> None:
    """A DataHub source in a child waits on its database for as long as a query takes: no
    output, no CPU time. ``lifeline.Stall`` does not count the time its main thread waits on
    a TCP socket (``waiting_on_server``), so a 30 s ``pg_sleep`` watched for 3 s under a 1 s
    bound is no stall (before, the bound stopped it at ~1 s); a child waiting on a lock (the
    fork hazard) or a socket pair (no server) still is, within the bound and a few polls."""
    from autokfp import lifeline

    query = (f"import pg8000.native; c = pg8000.native.Connection('{postgres_server.user}', "
             f"password='{postgres_server.password}', host='127.0.0.1', "
             f"port={postgres_server.port}, database='postgres'); print('ready', flush=True); "
             "c.run('SELECT pg_sleep(30)')")
    # the lock and socket-pair children wait 30 s (killed once seen stalled): a broken
    # Stall that took their wait for a server's never says stalled and fails below (None)
    lock = "import threading, time; lock = threading.Lock(); lock.acquire(); " \
           "print('ready', flush=True); lock.acquire(timeout=30)"
    pair = "import socket; a, b = socket.socketpair(); a.settimeout(30); " \
           "print('ready', flush=True); a.recv(1)"
    waited = {}
    for name, code in (("query", query), ("lock", lock), ("socketpair", pair)):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 text=True)
        try:
            assert child.stdout.readline() == "ready\n", name
            if name == "query":
                # in the query (its syscall read the same way), polled with no tight
                # deadline: a loaded machine may take a while to schedule the child; then
                # watched for 3 s, three times Stall's bound, while the query goes on
                assert _within(25.0, lambda pid=child.pid: lifeline.waiting_on_server(pid))
                waited[name] = _stalled_while_watched(child.pid, 1.0, 3.0, child)
            else:
                waited[name] = _stalled_within(child.pid, 1.0, child)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert waited["query"] is None, waited
    # seen within the bound and a few polls (1.0-1.02 s measured, 0.25 s between reads of
    # /proc); 10 s leaves the test's own process room to be descheduled on a loaded machine
    assert waited["lock"] is not None and 1.0 <= waited["lock"] < 10, waited
    assert waited["socketpair"] is not None and 1.0 <= waited["socketpair"] < 10, waited
