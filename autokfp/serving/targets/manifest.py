"""The ``manifest`` target: only the InferenceService YAML is written; nothing is served."""

from __future__ import annotations

from typing import Any

import pandas as pd

from autokfp.config import RunConfig
from autokfp.errors import DeploymentError
from autokfp.serving.deployment import Verification
from autokfp.serving.targets.base import Release, register_target


@register_target("manifest")
class ManifestOnly:
    """Leaves serving to whoever applies the written manifest (GitOps, ``kubectl apply``)."""

    rolls_out = False

    def __init__(self, cfg: RunConfig, settings: Any):
        self.cfg = cfg

    def roll_out(self, release: Release, rows: pd.DataFrame,
                 expected: pd.DataFrame | None) -> Verification:
        raise DeploymentError("deploy.target 'manifest' writes the InferenceService YAML only; "
                              "it cannot serve or verify a version")
