"""The `resolve_config` step: the run form's typed parameters + the optional config override
-> the run config every later task reads, checked before any work starts.

The first task of the training pipeline. A bad value (a typo in a setting, an engine that is
not installed, a dataset that does not exist, a target that is not one of its columns) stops
the run here, within seconds, with the message ``autokfp run`` prints for the same config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autokfp.catalog.locations import (
    check_same_dataset,
    is_dataset_urn,
    locate_dataset,
    source_names,
)
from autokfp.config import FROM_CONFIG, RunConfig, apply_run_form
from autokfp.errors import SchemaError
from autokfp.steps.results import Publication, StepResult


@dataclass(frozen=True)
class ResolvedConfig(StepResult):
    """The run config every later task reads."""

    config: dict[str, Any]

    def publication(self) -> Publication:
        return Publication(returns=(self.config,))


def check_training_data(config: RunConfig) -> None:
    """Fail fast, before any step runs, on what would fail later: a missing or empty
    dataset, or a target column that is absent (``autokfp run`` checks the same)."""
    from autokfp.catalog.discovery import load_dataset

    frame, _ = load_dataset(config, config.training.dataset)
    if config.training.target not in frame.columns:
        raise SchemaError(
            f"training.target '{config.training.target}' is not a column of dataset "
            f"'{config.training.dataset}'; its columns are: {', '.join(map(str, frame.columns))}"
        )


def _check_same_dataset(config: RunConfig, urn: str) -> None:
    source_name, _, relative = config.training.dataset.partition("/")
    check_same_dataset(next(s for s in config.sources if s.name == source_name), relative, urn)


def with_monitoring_form(config: dict[str, Any] | None, *, window_days: float = -1,
                         drift_share: float = -1, performance_drop: float = -1,
                         labels: str = FROM_CONFIG) -> dict[str, Any]:
    """``config`` with the drift-monitoring run form's settings on top: each one left at -1
    (or ``from config``) keeps the config's ``monitoring`` value; the values are validated
    with the rest of the config."""
    data = dict(config or {})
    monitoring = data.get("monitoring")
    given = (("window_days", window_days), ("drift_share", drift_share),
             ("performance_drop", performance_drop))
    form: dict[str, Any] = {key: value for key, value in given
                            if value is not None and float(value) != -1}
    if isinstance(labels, str) and labels.strip() not in ("", FROM_CONFIG):
        current = monitoring.get("labels") if isinstance(monitoring, dict) else None
        form["labels"] = {**(current if isinstance(current, dict) else {}), "path": labels.strip()}
    if form:
        data["monitoring"] = {**(monitoring if isinstance(monitoring, dict) else {}), **form}
    return data


def resolve_config(config: dict[str, Any] | None = None, dataset: str = FROM_CONFIG,
                   target: str = FROM_CONFIG, task: str = FROM_CONFIG,
                   model_name: str = FROM_CONFIG, budget_seconds: int = -1,
                   engines: str = FROM_CONFIG, require_approval: bool = False,
                   check_data: bool = True, window_days: float = -1, drift_share: float = -1,
                   performance_drop: float = -1, labels: str = FROM_CONFIG) -> ResolvedConfig:
    """The run's config from the run form (see ``autokfp.config.apply_run_form``, and
    ``with_monitoring_form`` for the monitoring settings), validated; with ``check_data`` the
    dataset is read and its target column checked. A DataHub dataset URN is looked up in the
    catalog first (``autokfp.catalog.locations``)."""
    from autokfp.settings import require_shared_state
    from autokfp.steps.form import refuse_passwords_in_pod
    from autokfp.steps.io import read_config

    # In a pod, the shared registry and artifact store come first: the first task of a
    # namespace without them stops naming the ConfigMap keys, before it reads a catalog (a
    # DataHub URN) or data that would only be this pod's own, empty disk.
    require_shared_state()
    config = with_monitoring_form(config, window_days=window_days, drift_share=drift_share,
                                  performance_drop=performance_drop, labels=labels)
    urn = dataset.strip() if isinstance(dataset, str) and is_dataset_urn(dataset) else None
    if urn:
        dataset = locate_dataset(urn).run_dataset(source_names(config))
    resolved = apply_run_form(config, dataset=dataset, target=target, task=task,
                              model_name=model_name, budget_seconds=budget_seconds,
                              engines=engines, require_approval=require_approval)
    if urn:
        _check_same_dataset(resolved, urn)
    refuse_passwords_in_pod(resolved.sources, "the run form")
    read_config(resolved)  # in a pod: the registry and the artifact store must be shared ones
    if check_data:
        check_training_data(resolved)
    return ResolvedConfig(config=resolved.to_dict())
