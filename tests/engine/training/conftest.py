"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def h2o_cluster() -> Iterator[Any]:
    """The ``h2o`` module connected to a private one-thread, 1 GB local cluster, started as
    training starts one (``H2OCluster``: a free port, a cloud of its own, and a JVM that
    the kernel ends if this process is killed), shut down after the module's tests."""
    import h2o

    from autokfp.training.h2o_automl import H2OCluster

    with H2OCluster(nthreads=1, max_mem_size="1G"):
        yield h2o
