"""Hostile load for the readiness test, from its own process (so the probe measures the
server, not this client's GIL):
``python -m tests.serving.hostile.load URL ROWS.json SECONDS [MODEL]`` (MODEL: churn).

Five senders (a pause of PAUSE between requests) loop over: a Kernel SHAP explanation at the server's budget, a 10,000-row
request, a 4 MB date value, an 80-row request and a single row. Prints the status counts
as JSON when done.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import httpx

PAUSE = 0.05  # seconds between one sender's requests


def main(url: str, rows_path: str, seconds: float, model: str = "churn") -> dict[int | str, int]:
    rows = json.loads(open(rows_path).read())
    date = rows[0]["__date_column__"]
    rows = [{k: v for k, v in row.items() if k != "__date_column__"} for row in rows]
    bodies = [
        (f"/v1/models/{model}:explain", json.dumps({"instances": rows[:5]}).encode()),
        (f"/v1/models/{model}:predict", json.dumps({"instances": (rows * 200)[:10_000]}).encode()),
        (f"/v1/models/{model}:predict", json.dumps(
            {"instances": [{**rows[0], date: "2020-01-01" + " " * 4_000_000}]}).encode()),
        (f"/v1/models/{model}:predict", json.dumps({"instances": rows[:40] * 2}).encode()),
        (f"/v1/models/{model}:predict", json.dumps({"instances": rows[:1]}).encode()),
    ]
    counts: Counter[int | str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def fire(path: str, body: bytes) -> None:
        with httpx.Client(base_url=url, timeout=60) as session:
            while time.monotonic() < deadline:
                try:
                    status: int | str = session.post(
                        path, content=body, headers={"Content-Type": "application/json"}
                    ).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                with lock:
                    counts[status] += 1
                # the attacker's CPU is elsewhere: on this machine's 2 cores a sender must
                # not starve the server it attacks (that would test the scheduler)
                time.sleep(PAUSE)

    threads = [threading.Thread(target=fire, args=pair) for pair in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(counts)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), *sys.argv[4:5])))
