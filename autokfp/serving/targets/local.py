"""The ``local`` target: the predictor process on 127.0.0.1 (state in AUTOKFP_HOME/serving).

The new version's server is verified while the previous one (if any) keeps serving; only a
passed version with ``deploy.keep_local_server`` replaces it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.serving import deployment
from autokfp.serving.deployment import Verification
from autokfp.serving.targets.base import Release, register_target


@register_target("local")
class LocalTarget:
    rolls_out = True

    def __init__(self, cfg: RunConfig, settings: Any):
        self.cfg = cfg
        self.settings = settings
        self._serving = deployment.LocalServing(settings.home / "serving", settings.artifact_root)
        self._started: tuple[str, deployment.LocalServer | None, deployment.LocalServer,
                             Any] | None = None

    def start(self, release: Release) -> None:
        """Start the version's server now: it boots (forked by the run's warm process,
        ``serving.warm_predictor``, or a new interpreter that imports the serving stack; then
        it loads the model) while the deploy step scores the smoke rows offline; ``roll_out`` then verifies it. ``abandon`` stops it if ``roll_out`` never
        runs."""
        old = self._serving.current(release.service)
        port = None
        if self.cfg.deploy.keep_local_server and old is None:
            port = self.cfg.deploy.local_port if _port_free(self.cfg.deploy.local_port) else None
        log_file = self.settings.home / "logs" / f"serve-{release.service}-v{release.version}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        server, process = self._serving.start(release.service, release.version, release.model_dir,
                                              port=port, log_file=log_file)
        self._started = (release.version, old, server, process)

    def abandon(self) -> None:
        """Stop a server ``start`` started that ``roll_out`` did not take over."""
        started, self._started = self._started, None
        if started is not None:
            self._serving.stop(started[2])

    def roll_out(self, release: Release, rows: pd.DataFrame,
                 expected: pd.DataFrame | None) -> Verification:
        deploy, serving = self.cfg.deploy, self._serving
        if self._started is None or self._started[0] != release.version:
            self.abandon()
            self.start(release)
        assert self._started is not None  # noqa: S101 - set by start
        _, old, server, process = self._started
        self._started = None
        # one bound for the whole wait: a predictor that never gets ready fails after
        # ``ready_timeout_secs``, not after that waited once here and once by verify_endpoint
        deadline = time.monotonic() + deploy.ready_timeout_secs
        try:
            # a forked predictor that hangs before it is ready starts again as a new
            # interpreter (bounded: ``LocalServing.ready_or_restarted``)
            server, process = serving.ready_or_restarted(
                server, process, deploy.ready_timeout_secs,
                self.settings.home / "logs" / f"serve-{release.service}-v{release.version}.log")
            if expected is None:
                result = Verification(passed=False)
            else:
                result = deployment.verify_endpoint(server.url, release.service, rows, expected,
                                                    deploy.latency_budget_ms,
                                                    deploy.ready_timeout_secs, process,
                                                    ready_deadline=deadline)
        except Exception:
            serving.stop(server)
            raise
        if result.passed and deploy.keep_local_server:
            # the new server is named first: a kill between the two steps leaves the new
            # one serving and the old one, no longer named, stops on its own (see
            # ``deployment.LocalServing.start``); the other order would leave nothing named
            serving.record(server, release.service)
            if old is not None:
                serving.stop(old)
        else:  # a verification-only server, or a failed one: the old server (if any) keeps serving
            serving.stop(server)
        result.endpoint = server.url
        return result


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
