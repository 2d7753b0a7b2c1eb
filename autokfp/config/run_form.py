"""The run form: the typed parameters a pipeline shows in the Kubeflow UI next to ``config``,
applied over an optional config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from autokfp.config.passwords import mask_url_password
from autokfp.config.run import RunConfig, check_config_size, parse_config
from autokfp.config.training import BUDGET_SECONDS_RANGE
from autokfp.errors import ConfigError

# The run form: the typed parameters a pipeline shows in the Kubeflow UI next to ``config``.
# A parameter left at FROM_CONFIG keeps the config's value (or its default). Not "": KFP's UI
# reports a falsy default as "Missing parameter" (kubeflow/pipelines#11515).
FROM_CONFIG = "from config"


RUN_FORM_SOURCE = "run-form"


_URI_SOURCE_KINDS = {"gs": "gcs", "s3": "s3", "minio": "s3"}


_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", FROM_CONFIG))


def _name_from(path: str) -> str:
    stem = path.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")[:50].strip("-")
    return name or "model"


def _dataset_source(dataset: str, taken: set[Any]) -> tuple[dict[str, Any], str]:
    """A ``gs://``/``s3://``/``minio://`` object or a local file -> (a source that holds just
    that file, its ``<source>/<file>`` name)."""
    name = RUN_FORM_SOURCE
    while name in taken:
        name += "-1"
    scheme, _, rest = dataset.partition("://")
    if scheme.split("+", 1)[0].lower() in _SQL_SCHEMES:
        url, _, table = dataset.partition("#")
        if not table or "/" in table:
            raise ConfigError("a database dataset names its table after '#', e.g. "
                              "postgresql://user:${PG_PASSWORD}@db/crm#customers")
        return {"name": name, "kind": "sql", "url": url, "tables": [table]}, f"{name}/{table}"
    if scheme in _URI_SOURCE_KINDS:
        bucket_path = rest.strip("/")
        parent, _, file = bucket_path.rpartition("/")
        if not parent or not file:
            raise ConfigError(f"dataset '{dataset}': give the file, e.g. "
                              f"{scheme}://bucket/churn/customers.parquet")
        source = {"name": name, "kind": _URI_SOURCE_KINDS[scheme], "uri": f"{scheme}://{parent}",
                  "include": [file]}
        return source, f"{name}/{file}"
    if scheme == "file":
        dataset = rest
    path = Path(dataset)
    if not path.is_absolute():
        # masked: an unknown database scheme (snowflake://user:PASSWORD@...) lands here
        raise ConfigError(f"dataset '{mask_url_password(dataset)}' is neither <source>/<table "
                          "or file> of the config's sources, an absolute file path, a gs:// or "
                          "s3:// URI, "
                          "<database URL>#<table>, nor a DataHub dataset URN (urn:li:dataset:...)")
    source = {"name": name, "kind": "folder", "path": str(path.parent), "include": [path.name]}
    return source, f"{name}/{path.name}"


def resolve_dataset(dataset: str, sources: Any) -> tuple[list[Any], str]:
    """``dataset`` as ``(sources, <source>/<table or file>)``: a dataset of one of ``sources``
    as it is, else a source holding just that file or table is added (see
    ``apply_run_form``)."""
    dataset = dataset.strip()
    listed = list(sources) if isinstance(sources, (list, tuple)) else []
    names = {s.get("name") if isinstance(s, dict) else getattr(s, "name", None) for s in listed}
    if dataset.split("/", 1)[0] in names and "://" not in dataset:
        return listed, dataset
    source, chosen = _dataset_source(dataset, names)
    return [*listed, source], chosen


def apply_run_form(config: dict[str, Any] | None, *, dataset: str = FROM_CONFIG,
                   target: str = FROM_CONFIG, task: str = FROM_CONFIG,
                   model_name: str = FROM_CONFIG, budget_seconds: int = -1,
                   engines: str = FROM_CONFIG, require_approval: bool = False,
                   origin: str = "run config") -> RunConfig:
    """The run config a pipeline run uses: ``config`` (the optional full override) with the
    run form's typed parameters on top, validated like a config file.

    ``dataset`` is ``<source>/<table or file>`` of the config's sources, an absolute path or a
    ``gs://``/``s3://``/``minio://`` URI of one file, or ``<database URL>#<table>`` (a source
    holding only that file or table is added). A DataHub dataset URN is looked up in the
    catalog before this is called (``autokfp.catalog.locations``, in the resolve_config step).
    ``engines`` is a comma-separated list of engine names. ``require_approval`` can only add
    the requirement: a config that requires approval keeps requiring it. ``model_name``
    defaults to the dataset's file or table name when neither sets it. Raises ConfigError
    naming every bad field, like ``autokfp run`` does for a config file.
    """
    data: dict[str, Any] = {key: value for key, value in (config or {}).items()}
    training = dict(data.get("training") or {}) if isinstance(data.get("training"), dict) \
        else data.get("training")
    if not _unset(dataset):
        data["sources"], chosen = resolve_dataset(dataset, data.get("sources"))
        training = training if isinstance(training, dict) else {}
        training["dataset"] = chosen
    for key, value in (("target", target), ("task", task)):
        if not _unset(value):
            training = training if isinstance(training, dict) else {}
            training[key] = value.strip()
    if training is not None:
        data["training"] = training
    if not _unset(model_name):
        data["name"] = model_name.strip()
    elif "name" not in data and isinstance(training, dict) and training.get("dataset"):
        data["name"] = _name_from(str(training["dataset"]).split("/", 1)[-1])
    if budget_seconds is not None and int(budget_seconds) != -1:
        low, high = BUDGET_SECONDS_RANGE
        if not low <= int(budget_seconds) <= high:
            raise ConfigError(f"{origin}: budget_seconds {budget_seconds}: each engine's training "
                              f"time must be {low} to {high} seconds, or -1 for the config's "
                              "budget.max_runtime_secs (default 120)")
        budget = data.get("budget")
        data["budget"] = {**(budget if isinstance(budget, dict) else {}),
                          "max_runtime_secs": budget_seconds}
    if not _unset(engines):
        names = [name.strip() for name in engines.split(",") if name.strip()]
        current = data.get("engines")
        current = current if isinstance(current, dict) else {}
        # an engine named in the form keeps its settings from the config
        data["engines"] = {name: current.get(name) or {} for name in names}
    if require_approval:
        governance = data.get("governance")
        data["governance"] = {**(governance if isinstance(governance, dict) else {}),
                              "require_approval": True}
    if not data.get("sources") and not (isinstance(training, dict) and training.get("dataset")):
        raise ConfigError(f"{origin}: no dataset: give the run's dataset (a gs:// or s3:// URI, "
                          "<source>/<table> of the config's sources, or a DataHub URN) and its "
                          "target column, or a full config")
    parsed = parse_config(data, origin=origin)
    check_config_size(parsed, origin)
    return parsed
