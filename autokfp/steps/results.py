"""What a step returns: a typed result, and what of it the Kubeflow UI shows.

Every step returns a dataclass derived from ``StepResult``. Its ``publication()`` says, in
plain Python, what the component publishes: numbers for the task's Metrics artifact,
metadata per output artifact, curves for a ClassificationMetrics artifact and the values the
component returns. ``publish`` (below) turns that into calls on KFP's artifact objects,
duck-typed, so the engine never imports kfp and no component indexes a dict by string keys.
It lives here, not next to the components, so that a component's body (which KFP copies
into the compiled YAML and runs in the image) imports nothing but ``autokfp``: a user's own
top-level ``components`` package cannot shadow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Curves:
    """A classifier's ROC curve and confusion matrix, as KFP's ClassificationMetrics takes them."""

    fpr: list[float] | None = None
    tpr: list[float] | None = None
    thresholds: list[float] | None = None
    labels: list[str] | None = None
    confusion_matrix: list[list[int]] | None = None

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> Curves:
        roc = details.get("roc") or {}
        return cls(fpr=roc.get("fpr"), tpr=roc.get("tpr"), thresholds=roc.get("thresholds"),
                   labels=details.get("labels") if details.get("confusion_matrix") else None,
                   confusion_matrix=details.get("confusion_matrix"))


@dataclass(frozen=True)
class Publication:
    """What a component publishes of its step's result."""

    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: Curves | None = None
    returns: tuple[Any, ...] = ()


def finite_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric, finite entries of ``values`` (NaN cannot be shown in the UI)."""
    return {f"{prefix}{key}": value if isinstance(value, int) else float(value)
            for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


class StepResult:
    """The base of every step's result dataclass."""

    def publication(self) -> Publication:
        return Publication()


def publish(result: Any, metrics: Any = None, classification: Any = None,
            **artifacts: Any) -> Any:
    """Publish ``result.publication()`` onto a task's KFP artifacts; return its single
    returned value, or the tuple.

    Numbers go to the Metrics artifact, metadata onto the named output artifacts, curves onto
    a ClassificationMetrics artifact. Components call it as
    ``return publish(step(...), metrics=metrics, dataset=dataset)``.
    """
    publication = result.publication()
    if publication.metrics and metrics is None:
        raise TypeError(f"{type(result).__name__} has metrics to publish: pass metrics=")
    for key, value in publication.metrics.items():
        metrics.log_metric(key, value)
    for name, metadata in publication.metadata.items():
        if name not in artifacts:
            raise TypeError(f"{type(result).__name__} has metadata for the artifact {name!r}: "
                            f"pass {name}=")
        artifacts[name].metadata.update(metadata)
    curves = publication.curves
    if curves is not None and classification is not None:
        if curves.fpr:
            classification.log_roc_curve(curves.fpr, curves.tpr, curves.thresholds)
        if curves.confusion_matrix:
            classification.log_confusion_matrix(curves.labels, curves.confusion_matrix)
    returns = publication.returns
    return returns[0] if len(returns) == 1 else returns
