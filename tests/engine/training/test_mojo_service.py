"""The run's shared MOJO scorer (``autokfp.training.mojo_service``) ends with the command
that started it, however the command ends, and leaves no socket behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
