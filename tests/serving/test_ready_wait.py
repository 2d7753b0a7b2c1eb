"""``deployment.wait_ready`` against a server that accepts connections and never answers."""

from __future__ import annotations

import socket
import time

from autokfp.serving import deployment
from autokfp.serving.predictor_client import PredictorClient


def _silent_server() -> socket.socket:
    """A listening socket nobody accepts from: the kernel completes the TCP handshake, so a
    request is sent and then waits for an answer that never comes (a hung predictor)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_no_readiness_request_outlives_the_deadline_by_more_than_the_last_short_ask(
        monkeypatch) -> None:
    asked: list[tuple[float, float, bool]] = []  # (time left when asked, timeout given, answer)
    model_ready = PredictorClient.model_ready

    def recorded(self, model, timeout=2.0):
        left = deadline - time.monotonic()
        answer = model_ready(self, model, timeout=timeout)
        asked.append((left, timeout, answer))
        return answer

    monkeypatch.setattr(PredictorClient, "model_ready", recorded)
    with _silent_server() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # the client is built first (its start took 0.5-5.5 s under load), so each deadline
        # below and wait_ready's own are set within microseconds of each other
        with PredictorClient(url) as client:
            # a caller whose share of the deadline is spent still asks once, briefly
            deadline = time.monotonic()
            assert deployment.wait_ready(url, "m", 0.0, client=client) is False
            assert [timeout for _, timeout, _ in asked] == [deployment.LAST_ASK_SECS], asked
            asked.clear()
            # with 5 s left: an ask waits up to its 2 s, and no later ask is given more
            # than what was left when it was sent (or the short last ask), never another 2 s
            deadline = time.monotonic() + 5.0
            assert deployment.wait_ready(url, "m", 5.0, client=client) is False
    assert len(asked) >= 2 and not any(answer for *_, answer in asked), asked
    assert all(timeout <= deployment.READY_ASK_SECS for _, timeout, _ in asked), asked
    # ``left`` is read here a little after wait_ready read its own clock: 0.5 s of slack for
    # a loaded machine, where the behaviour this replaced gave every ask 2 s (the last ask,
    # with ~0-1 s left, fails)
    for left, timeout, _ in asked:
        assert timeout <= max(deployment.LAST_ASK_SECS, left) + 0.5, asked
