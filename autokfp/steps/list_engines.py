"""The `list_engines` step: which engines the training fan-out runs, from the config."""

from __future__ import annotations

from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.io import read_config


def list_engines(config: dict[str, Any] | RunConfig) -> list[str]:
    """The configured engines (``config.engines``), in the config's order.

    Validating the config here also checks, before any training starts, that every named
    engine is installed in this image and its settings are valid.
    """
    return read_config(config).engine_names()
