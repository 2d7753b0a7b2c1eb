"""Serving targets: one ``ServingTarget`` interface (``base.py``) and one module per target.

``local.py`` (a predictor process on this machine), ``kubernetes.py`` (a KServe
InferenceService through the Kubernetes API) and ``manifest.py`` (the YAML only). A new
target is one module whose class registers itself with ``@register_target("<name>")``,
plus an import below and the name in ``DeploySpec.target``.
"""

from autokfp.serving.targets import kubernetes, local, manifest  # noqa: F401 - registration
from autokfp.serving.targets.base import (
    SERVING_TARGETS,
    Release,
    ServingTarget,
    open_target,
    register_target,
    rolls_out,
)

__all__ = ["SERVING_TARGETS", "Release", "ServingTarget", "open_target", "register_target",
           "rolls_out"]
