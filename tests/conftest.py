"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


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
