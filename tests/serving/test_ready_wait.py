"""``deployment.wait_ready``: no readiness request outlives the deadline by more than the
last short ask, told on a fake clock (deterministic under any load)."""

from __future__ import annotations

from types import SimpleNamespace

from autokfp.serving import deployment


class _Clock:
    """``deployment``'s clock: time passes only when a request waits out its timeout (a
    predictor that accepts the connection and never answers) or the loop sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _SilentPredictor:
    """A client whose every readiness request waits its whole timeout and gets no answer;
    it records (time left to the deadline, timeout given) per request."""

    refused = None

    def __init__(self, clock: _Clock) -> None:
        self.clock, self.deadline = clock, 0.0
        self.asked: list[tuple[float, float]] = []

    def model_ready(self, model: str, timeout: float = 2.0) -> bool:
        self.asked.append((self.deadline - self.clock.now, timeout))
        self.clock.now += timeout
        return False


def test_no_readiness_request_outlives_the_deadline_by_more_than_the_last_short_ask(
        monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(deployment, "time", SimpleNamespace(monotonic=clock.monotonic,
                                                            sleep=clock.sleep))
    client = _SilentPredictor(clock)
    # a caller whose share of the deadline is spent still asks once, briefly
    client.deadline = clock.now
    assert deployment.wait_ready("http://predictor", "m", 0.0, client=client) is False
    assert client.asked == [(0.0, deployment.LAST_ASK_SECS)]
    # with 5 s: asks of 2 s while 2 s or more are left, then only what is left (at least
    # the short last ask); the behaviour this replaced asked 2 s each time (ending ~1.5 s
    # past the deadline)
    client.asked.clear()
    client.deadline = clock.now + 5.0
    assert deployment.wait_ready("http://predictor", "m", 5.0, client=client) is False
    assert [timeout for _, timeout in client.asked] == [2.0, 2.0, 0.5], client.asked
    for left, timeout in client.asked:
        assert timeout == min(deployment.READY_ASK_SECS, max(deployment.LAST_ASK_SECS, left))
    assert clock.now <= client.deadline + deployment.LAST_ASK_SECS
