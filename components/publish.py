"""``publish``: a step's typed result onto the task's KFP artifacts.

The one place where a result meets KFP's artifact objects: numbers go to the Metrics
artifact, metadata onto the named output artifacts, curves onto a ClassificationMetrics
artifact; the values the component returns come back. Components call it as
``return publish(step(...), metrics=metrics, dataset=dataset)``.
"""

from __future__ import annotations

from typing import Any


def publish(result: Any, metrics: Any = None, classification: Any = None,
            **artifacts: Any) -> Any:
    """Publish ``result.publication()``; return its single returned value, or the tuple."""
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
