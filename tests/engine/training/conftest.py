"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def _connect(url: str) -> Any:
    """The ``h2o`` module connected to the cluster at ``url`` (again, when a test that
    started a cluster of its own in this process left h2o connected to that one)."""
    import h2o

    connection = h2o.connection()
    if connection is None or connection.base_url != url:
        h2o.connect(url=url, verbose=False)
    return h2o


@pytest.fixture(scope="session")
def _h2o_jvm() -> Iterator[str]:
    """One private one-thread, 1 GB local cluster per test process, for every module that
    uses ``h2o_cluster`` (a JVM start is 6-13 s here), started as training starts one
    (``H2OCluster``: a free port, a cloud of its own, and a JVM that the kernel ends if this
    process is killed) and shut down at the end of the session. Yields its URL."""
    import h2o

    from autokfp.training.h2o_automl import H2OCluster

    with H2OCluster(nthreads=1, max_mem_size="1G"):
        url = h2o.connection().base_url
        yield url
        _connect(url)  # the block's end shuts down the cluster h2o is connected to


@pytest.fixture(scope="module")
def _h2o_clean_slate(_h2o_jvm: str) -> None:
    """What an earlier module left on the shared cluster (frames, models) removed: each
    module starts on an empty cluster, as with a JVM of its own."""
    _connect(_h2o_jvm).remove_all()


@pytest.fixture
def h2o_cluster(_h2o_jvm: str, _h2o_clean_slate: None) -> Any:
    """The ``h2o`` module connected to the shared local cluster (``_h2o_jvm``), emptied at
    the start of each module."""
    return _connect(_h2o_jvm)
