"""The run's shared MOJO scorer (``autokfp.training.mojo_service``) ends with the command
that started it, however the command ends, and leaves no socket behind."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autokfp.training import mojo_service

RUNNER = """
import os, sys, time
from autokfp.training.mojo_service import SCORER_ENV, shared_mojo_scorer
with shared_mojo_scorer() as address:
    print(os.environ[SCORER_ENV], flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_kill_9_of_the_command_ends_its_scorer_and_removes_its_socket(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop(mojo_service.SCORER_ENV, None)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER], env=env, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        named = runner.stdout.readline().strip()
        pid, _, address = named.partition(":")
        assert pid.isdigit() and Path(address).parent.parent == tmp_path
        deadline = time.monotonic() + 60
        while not Path(address).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Path(address).exists(), "the scorer did not bind its socket"
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        deadline = time.monotonic() + 10
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(int(pid))
        assert not list(tmp_path.glob("autokfp-scorer-*"))  # nor its socket folder
    finally:
        if runner.poll() is None:
            runner.kill()
        if pid.isdigit() and _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def test_switched_off_or_absent_the_tasks_score_in_process(monkeypatch):
    monkeypatch.setattr(mojo_service, "_unusable", False)
    for value in ("0", "off", "", "12:", ":/tmp/x"):
        monkeypatch.setenv(mojo_service.SCORER_ENV, value)
        assert mojo_service.shared_address() is None
    monkeypatch.setenv(mojo_service.SCORER_ENV, "0")
    with mojo_service.shared_mojo_scorer() as address:
        assert address is None and os.environ[mojo_service.SCORER_ENV] == "0"
    monkeypatch.setenv(mojo_service.SCORER_ENV, f"{os.getpid()}:/tmp/x")
    assert mojo_service.shared_address() == f"{os.getpid()}:/tmp/x"


def test_a_scorer_whose_socket_never_appears_is_given_up_after_the_bind_wait(monkeypatch,
                                                                             tmp_path):
    """A named scorer whose process runs but whose socket this task cannot see (a container
    with its own /tmp): the task waits ``BIND_WAIT_SECS``, not a load's limit, then scores
    in-process (``ScorerUnavailable``; the process does not try it again)."""
    import pytest

    monkeypatch.setattr(mojo_service, "_unusable", False)
    monkeypatch.setattr(mojo_service, "BIND_WAIT_SECS", 0.5)
    begun = time.monotonic()
    with pytest.raises(mojo_service.ScorerUnavailable, match="cannot reach it"):
        mojo_service.SharedMojo(tmp_path / "model.zip",
                                f"{os.getpid()}:{tmp_path / 'never' / 'socket'}")
    assert time.monotonic() - begun < 5.0
    monkeypatch.setenv(mojo_service.SCORER_ENV, f"{os.getpid()}:/tmp/x")
    assert mojo_service.shared_address() is None


# ------------------------------------------------ deadlines, and the scorer's bounded models
def _listening(tmp_path) -> tuple[socket.socket, str]:
    address = str(tmp_path / "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(4)
    return listener, address


def _trickling_peer(listener: socket.socket, prompt: int, stop_after: float) -> threading.Thread:
    """A fake scorer on a real socket: it answers its first ``prompt`` requests at once,
    then each answer one byte per 100 ms, closing the connection after ``stop_after`` s."""

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            answered = 0
            while True:
                try:
                    request = mojo_service._receive(connection)
                except (EOFError, OSError):
                    return
                if request[0] == "load":
                    reply = ("ok", {"handle": 0, "description": {"preds_size": 1}})
                else:
                    reply = ("ok", {"scores": np.zeros((len(request[2]), 1))})
                body = pickle.dumps(reply)
                data = mojo_service._HEADER.pack(len(body)) + body
                if answered < prompt:
                    connection.sendall(data)
                    answered += 1
                    continue
                begun = time.monotonic()
                for i in range(len(data)):
                    if time.monotonic() - begun > stop_after:
                        return
                    try:
                        connection.sendall(data[i:i + 1])
                    except OSError:
                        return
                    time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_scorer_that_trickles_its_answer_is_left_at_the_deadline(monkeypatch, tmp_path):
    """The time limit is a deadline for the whole exchange: a scorer that sends its answer
    one byte per 100 ms (each receive well within any per-receive limit) is left when the
    limit has passed, not once its answer is complete, and the task scores in-process
    (``ScorerUnavailable``). Both the load's and a score's answer."""
    monkeypatch.setattr(mojo_service, "_unusable", False)
    monkeypatch.setattr(mojo_service, "LOAD_TIMEOUT_SECS", 0.6)
    listener, address = _listening(tmp_path)
    with listener:
        peer = _trickling_peer(listener, prompt=0, stop_after=4.0)
        begun = time.monotonic()
        with pytest.raises(mojo_service.ScorerUnavailable, match=r"no answer within 1 s"):
            mojo_service.SharedMojo(tmp_path / "model.zip", f"{os.getpid()}:{address}")
        # the peer trickles for 4 s: a limit per receive would wait for that, the deadline
        # (0.6 s) ends it well before; 3 s leaves room for a loaded machine (was 1.5 s)
        assert time.monotonic() - begun < 3.0
        assert mojo_service.shared_address() is None  # this process gives it up
        peer.join(10)

        monkeypatch.setattr(mojo_service, "_unusable", False)
        monkeypatch.setattr(mojo_service, "SCORE_TIMEOUT_SECS", 0.5)
        monkeypatch.setattr(mojo_service, "SCORE_SECS_PER_ROW", 0.001)
        peer = _trickling_peer(listener, prompt=1, stop_after=4.0)
        shared = mojo_service.SharedMojo(tmp_path / "model.zip", f"{os.getpid()}:{address}")
        begun = time.monotonic()
        with pytest.raises(mojo_service.ScorerUnavailable, match=r"no answer within 1 s"):
            shared.score(np.zeros((100, 3)))
        assert time.monotonic() - begun < 0.5 + 0.1 + 2.4  # the 4 s trickle, cut at 0.6 s
        peer.join(10)


class _FakeMojo:
    """A stand-in for a loaded MojoModel: ``score0`` as H2O's fills its answer array."""

    def __init__(self, path: str) -> None:
        self.weight = float(Path(path).read_text().split()[0])

    def score0(self, row, preds):
        preds[0] = self.weight * float(np.sum(row))
        preds[1] = self.weight
        return preds


def _describe(model: _FakeMojo) -> dict:
    return {"names": ["a", "b", "y"], "preds_size": 2, "weight": model.weight}


def test_the_scorer_keeps_its_models_bounded_and_answers_the_same(tmp_path):
    """The run's scorer keeps at most ``max_models`` models (and ``max_bytes`` of MOJO
    files), least recently used dropped first; a task whose model was dropped still gets
    the same answers through its handle (the file loaded again), and a file changed since
    is refused (the task then scores in-process), through the real socket protocol."""
    mojos = []
    for weight in (1, 2, 3):
        path = tmp_path / f"m{weight}.zip"
        path.write_text(f"{weight} " + "x" * 1000)  # about 1 KB each
        mojos.append(path)
    rows = np.arange(12, dtype="float64").reshape(4, 3)
    cache = mojo_service.ModelCache(_FakeMojo, _describe, max_models=2, max_bytes=10_000)
    stop = threading.Event()
    address = str(tmp_path / "socket")
    server = threading.Thread(target=mojo_service.serve, args=(address, cache, lambda n:
                                                               np.zeros(n), stop), daemon=True)
    server.start()
    try:
        named = f"{os.getpid()}:{address}"
        tasks = [mojo_service.SharedMojo(path, named) for path in mojos]
        assert [t.handle for t in tasks] == [0, 1, 2] and cache.loads == 3
        assert cache.loaded_handles == [1, 2]  # the first model dropped
        first = tasks[0].score(rows)  # its handle still answers: loaded again
        np.testing.assert_array_equal(first[:, 0], rows.sum(axis=1) * 1.0)
        assert cache.loads == 4 and cache.loaded_handles == [2, 0]
        np.testing.assert_array_equal(tasks[2].score(rows)[:, 0], rows.sum(axis=1) * 3.0)
        again = mojo_service.SharedMojo(mojos[2], named)  # loaded: a look-up
        assert again.handle == 2 and cache.loads == 4 and cache.loaded_handles == [0, 2]
        for _ in range(20):  # a long run scoring many models: never more than the bound
            for task in tasks:
                weight = _FakeMojo(str(mojos[task.handle])).weight
                np.testing.assert_array_equal(task.score(rows)[:, 1], np.full(4, weight))
                assert len(cache.loaded_handles) <= 2
        assert cache.loaded_handles == [1, 2]
        mojos[0].write_text("7 " + "y" * 2000)  # changed after its model was dropped
        with pytest.raises(mojo_service.ScorerUnavailable, match=r"m1\.zip changed since"):
            tasks[0].score(rows)
    finally:
        stop.set()
        server.join(5)
    assert not server.is_alive()

    # the size bound: the files' bytes, the latest model always kept
    cache = mojo_service.ModelCache(_FakeMojo, _describe, max_models=10, max_bytes=2_500)
    for path in mojos:
        cache.load(str(path))
    assert cache.loaded_handles == [1, 2] and cache.loaded_bytes <= 2_500
    small = mojo_service.ModelCache(_FakeMojo, _describe, max_models=10, max_bytes=10)
    assert small.load(str(mojos[0]))["description"]["weight"] == 7.0
    assert small.loaded_handles == [0]  # larger than the bound alone: still kept
    with pytest.raises(ValueError, match="max_models must be at least 1"):
        mojo_service.ModelCache(_FakeMojo, _describe, max_models=0)
