"""The `list_engines` step: which engines the training fan-out runs, from the config."""

from __future__ import annotations

from typing import Any

from autokfp.config import RunConfig
from autokfp.steps.io import read_config


def list_engines(config: dict[str, Any] | RunConfig) -> list[dict[str, Any]]:
    """One item per configured engine (``config.engines``), in the config's order:
    ``{"engine": name, "settings": what that engine's training task reads}``.

    The settings (budget, that engine's own settings, primary metric, calibration) are all a
    training task receives, so its cache key in the cluster changes only when one of them
    does. Validating the config here also checks, before any training starts, that every
    named engine is installed in this image and its settings are valid.
    """
    cfg = read_config(config)
    return [{"engine": name, "settings": cfg.training_settings(name).to_dict()}
            for name in cfg.engine_names()]
