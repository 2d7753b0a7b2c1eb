"""One error hierarchy for everything a user can cause.

Every message names what is wrong (file, column, setting) and what to do about it. The CLI
prints these messages without a traceback and exits non-zero.
"""

from __future__ import annotations

from typing import Any


class AutokfpError(Exception):
    """Root of every error autokfp raises on purpose."""

    exit_code = 2


class ConfigError(AutokfpError):
    """A run configuration or setting is invalid."""


class StorageError(AutokfpError):
    """An artifact URI cannot be read or written."""


class DataError(AutokfpError):
    """Input data is missing, empty, unreadable or unusable."""


class SchemaError(DataError):
    """Data does not have the columns or types that are required."""


class QualityGateError(DataError):
    """The data quality gate failed; ``failures`` lists every failed check."""

    def __init__(self, message: str, failures: list[str] | None = None):
        super().__init__(message)
        self.failures = failures or []


class TrainingError(AutokfpError):
    """Training could not produce a usable model."""


class RegistryError(AutokfpError):
    """The model registry refused an operation or holds unexpected state."""


class ModelRefError(ConfigError, RegistryError):
    """A registered model's reference is not ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME``.

    Both a bad setting (what ``score`` and a pipeline parameter raise) and a registry error
    (what ``registry.load_model`` raises), so either caller's ``except`` still catches it."""


class DeploymentError(AutokfpError):
    """A model could not be deployed."""


class PolicyError(AutokfpError):
    """A governance policy forbids the next step (a fairness limit stays broken, or a person's
    approval is required and missing). The message names the policy setting and what to do."""


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, also inside lists, tuples, sets and dicts, turned into
    Python ones, so a message shows ``0.3`` and ``[1, 2]``, never ``np.float64(0.3)``."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(plain(v) for v in value)
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()  # a numpy scalar (or 0-d array); numpy is not imported here
    return value
