"""What every serving target shares: the ``ServingTarget`` interface and the registry.

A target is where a verified rollout goes (``local``, ``kubernetes``) or, for
``manifest``, the decision not to roll out at all (only the InferenceService YAML is
written). Each kind is one module in this package whose class registers itself with
``@register_target("<name>")`` under the name ``deploy.target`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pandas as pd

from autokfp.config import RunConfig
from autokfp.errors import DeploymentError
from autokfp.serving.deployment import Verification


@dataclass
class Release:
    """One version to roll out: what a target needs to start, verify and route it."""

    service: str  # the InferenceService / local server name
    version: str
    model_dir: str  # the version's model, downloaded
    manifest: dict[str, Any]  # the InferenceService (always built, always written)
    canary: bool  # the version replaces a serving one: split traffic while verifying
    # builds this version's InferenceService again for another mode or name:
    # builder(canary=..., mode=..., name=...) -> manifest (see inference_service)
    builder: Callable[..., dict[str, Any]] | None = None
    # outcomes(version, since) -> (the rows that version answered since then, with the
    # ground truth that arrived in ab_test.LABEL_COLUMN, and a note): the A/B outcome test
    outcomes: Callable[[str, Any], tuple[pd.DataFrame, str]] | None = None
    # the version users get until this one is promoted (the champion it replaces); after a
    # rolled-back canary the InferenceService's spec names the rejected version, not this
    previous_version: str | None = None

    def rebuild(self, mode: str, canary: bool, name: str | None = None) -> dict[str, Any]:
        """This version's InferenceService in ``mode`` (``name``: another service name)."""
        if self.builder is None:
            raise DeploymentError("this release cannot be rebuilt: it has no builder")
        return self.builder(canary=canary, mode=mode, name=name)


class ServingTarget(Protocol):
    """Serves one released version and verifies it against offline predictions."""

    name: ClassVar[str]
    rolls_out: ClassVar[bool]  # False: nothing is served (manifest only)

    def roll_out(self, release: Release, rows: pd.DataFrame,
                 expected: pd.DataFrame | None) -> Verification:
        """Serve ``release`` and check it; ``expected`` None means offline scoring failed
        (the result must then not pass). Traffic ends on the new version only if it passed."""
        ...


SERVING_TARGETS: dict[str, Callable[[RunConfig, Any], ServingTarget]] = {}


def register_target(name: str) -> Callable[[type], type]:
    """Class decorator: the class is the target ``deploy.target: <name>`` selects."""

    def register(cls: type) -> type:
        cls.name = name  # type: ignore[attr-defined]
        SERVING_TARGETS[name] = cls
        return cls

    return register


def rolls_out(name: str) -> bool:
    """Whether target ``name`` serves anything (unknown names fail later, in ``open_target``)."""
    kind = SERVING_TARGETS.get(name)
    return kind is None or bool(getattr(kind, "rolls_out", True))


def open_target(name: str, cfg: RunConfig, settings: Any) -> ServingTarget:
    """The target ``name`` (a resolved ``deploy.target``) for this run."""
    if name not in SERVING_TARGETS:
        raise DeploymentError(f"unknown deploy target '{name}'; use "
                              f"{', '.join(sorted(SERVING_TARGETS))}")
    return SERVING_TARGETS[name](cfg, settings)
