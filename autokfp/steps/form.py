"""Typed inputs of a component used alone, in someone else's pipeline.

autokfp's own pipelines hand every component the resolved run config (``resolve_config``)
and the artifacts of the components before it. A component used alone gets what a user's
pipeline has instead: a Parquet or CSV ``Dataset`` of its own, a target column, a budget,
and no run config. These helpers turn those typed inputs into what the steps read, so the
steps stay the same for both uses:

* ``form_config``: the run config from the optional ``config`` with the typed inputs on top
  (``autokfp.config.apply_run_form``: the same validation and messages as ``autokfp run``);
  without a config, the input dataset itself is the run's dataset.
* ``standalone``: the above, plus the dataset as Parquet (a CSV dataset is converted) and,
  without a ``schema`` artifact from ``discover``, the dataset profiled (semantic types,
  PII tags) as discovery would.
* ``training_form``: the training settings a ``train_model`` task reads, with the typed
  budget on top.

Like ``autokfp.steps.results``, this module is no step of its own: a component body may
import it next to the one step it calls.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokfp.config import FROM_CONFIG, SQL_PASSWORD_ENV_PREFIX, apply_run_form
from autokfp.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def refuse_passwords_in_pod(sources: Iterable[Any], origin: str) -> None:
    """In a pipeline's pod, refuse a source whose url held a literal password (the config
    moved it into an environment variable of this process only): a run's parameters are
    stored by Kubeflow, shown in its UI and handed to every task's pod, and the other pods
    would not have the variable. Outside Kubernetes, and under kfp.local (whose tasks inherit
    this process's environment), this does nothing. Raises ConfigError naming the sources."""
    from autokfp.settings import in_cluster

    if not in_cluster() or os.environ.get("AUTOKFP_RUNNER_PID"):
        return
    moved = [source.name for source in sources if getattr(source, "kind", None) == "sql"
             and "${" + SQL_PASSWORD_ENV_PREFIX in source.url]
    if moved:
        raise ConfigError(_password_message(origin, f"source(s) {', '.join(moved)}"))


def refuse_literal_urls_in_pod(urls: dict[str, str], origin: str) -> None:
    """``refuse_passwords_in_pod`` for URLs as typed (``name -> url``, e.g. a component's
    ``dataset`` and ``output`` inputs): in a pipeline's pod, one holding a literal password
    (``user:PASSWORD@`` or ``?password=``; ``${VAR}`` is fine) is a ConfigError naming the
    inputs, never the password."""
    from autokfp.config import mask_url_password
    from autokfp.settings import in_cluster

    if not in_cluster() or os.environ.get("AUTOKFP_RUNNER_PID"):
        return
    literal = [name for name, url in urls.items()
               if isinstance(url, str) and mask_url_password(url) != url]
    if literal:
        raise ConfigError(_password_message(origin, ", ".join(literal)))


def _password_message(origin: str, what: str) -> str:
    return (f"{origin}: {what} hold a literal password in the url; a run's parameters are "
            "stored by Kubeflow, shown in its UI and passed to every task. Put the password "
            "in the Secret the pods receive as environment variables (autokfp-credentials), "
            "write ${VAR} in the url (e.g. postgresql://reader:${PG_PASSWORD}@db/crm#customers) "
            "and start the run again.")


def _set(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() not in ("", FROM_CONFIG)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != -1
    return bool(value)


def form_config(config: dict[str, Any] | None, *, dataset_path: str | None = None,
                **form: Any) -> dict[str, Any]:
    """The run config a component reads: ``config`` as it is when no typed input is set
    (autokfp's own pipelines: the resolved config, and an unchanged cache key), else
    ``config`` with the typed inputs (``target``, ``task``, ``model_name``,
    ``budget_seconds``...) on top, validated. Without a config dataset, ``dataset_path`` (the
    component's input artifact) is the run's dataset, so a user's pipeline needs no config.
    Raises ConfigError naming every bad setting, as ``autokfp run`` does."""
    if config and not any(_set(value) for value in form.values()):
        return config
    training = (config or {}).get("training")
    has_dataset = isinstance(training, dict) and bool(training.get("dataset"))
    dataset = dataset_path if dataset_path and not has_dataset else FROM_CONFIG
    given = {key: value for key, value in form.items() if _set(value)}
    return apply_run_form(config or None, dataset=dataset, origin="component inputs",
                          **given).to_dict()


def located_config(config: dict[str, Any] | None, dataset_uri: str = FROM_CONFIG,
                   target: str = FROM_CONFIG) -> dict[str, Any]:
    """The run config of a component that reads the dataset itself (``discover``): ``config``
    as it is without typed inputs, else the run form's resolution (``resolve_config``: a URI,
    ``<database URL>#<table>``, ``<source>/<table>`` or a DataHub URN looked up in the
    catalog), the data not read twice."""
    if config and not (_set(dataset_uri) or _set(target)):
        return config
    from autokfp.steps.resolve_config import resolve_config

    return resolve_config(config, dataset=dataset_uri, target=target, check_data=False).config


def model_form_config(config: dict[str, Any] | None, model_path: str, dataset_path: str,
                      **form: Any) -> dict[str, Any]:
    """``form_config`` for a component that reads a packaged model: without a target (neither
    typed nor in ``config``), the model's own (its ``meta.json``)."""
    import json

    training = (config or {}).get("training")
    if not _set(form.get("target")) and not (isinstance(training, dict) and training.get("target")):
        meta = Path(model_path, "artifacts", "meta.json")
        if meta.is_file():
            form["target"] = json.loads(meta.read_text())["target"]
    return form_config(config, dataset_path=dataset_path, **form)


@dataclass(frozen=True)
class Standalone:
    """What a step reads: the run config, the dataset as Parquet and its schema JSON."""

    config: dict[str, Any]
    dataset_path: str
    schema_path: str


def _parquet(path: Path) -> bool:
    if path.is_dir():  # a folder of Parquet parts (pandas reads it as one table)
        parts = [part for part in sorted(path.rglob("*"))
                 if part.is_file() and not part.name.startswith((".", "_"))]
        if parts and all(_parquet(part) for part in parts):
            return True
        raise DataError(f"input dataset {path} is a folder, but not of Parquet parts only "
                        f"({len(parts)} files): pass one Parquet or CSV file, or a folder "
                        "whose every file is Parquet")
    with path.open("rb") as handle:
        return handle.read(4) == b"PAR1"


def _scratch_folder() -> Path:
    """A temporary folder for a converted dataset or a schema made here, removed when the
    process ends (a component's task is one process), so no copy of the user's data is left
    behind in the temporary directory."""
    folder = tempfile.mkdtemp(prefix="autokfp-standalone-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder)


def _read_csv_input(path: Path, label: str) -> Any:
    """An input artifact that is not Parquet, read as CSV. Raises DataError naming it
    (``label``) when it is not CSV either, or has no rows."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{label} is neither Parquet nor CSV: {exc}") from None
    if frame.empty:
        raise DataError(f"{label} has no rows")
    return frame


def standalone(config: dict[str, Any] | None, dataset_path: str, schema_path: str | None,
               **form: Any) -> Standalone:
    """The inputs of a component that reads a dataset and its schema, used alone or in
    autokfp's pipelines: the run config (``form_config``; ``dataset_path`` is the run's
    dataset when no config names one), the dataset as Parquet (a CSV input is converted into
    a temporary folder), and its schema (``schema_path`` when ``discover`` wrote one, else
    the dataset profiled here as discovery would: semantic types, PII tags). In autokfp's
    pipelines (a config, a Parquet dataset and a schema) everything passes through as it is.
    Raises ConfigError for a bad setting, DataError for a dataset that is missing, empty, or
    neither Parquet nor CSV."""
    import pandas as pd

    path = Path(dataset_path)
    if not path.exists():
        raise DataError(f"input dataset {dataset_path} does not exist: pass a Dataset artifact "
                        "holding one Parquet or CSV file")
    resolved = form_config(config, dataset_path=dataset_path, **form)
    frame = None
    if not _parquet(path):
        frame = _read_csv_input(path, f"input dataset {dataset_path}")
        path = _scratch_folder() / "dataset.parquet"
        frame.to_parquet(path, index=False)
        log.info("input dataset %s read as CSV (%d rows) and converted to Parquet",
                 dataset_path, len(frame))
    if schema_path and Path(schema_path).is_file():
        return Standalone(resolved, str(path), schema_path)
    from autokfp.catalog.profiling import profile_frame

    frame = frame if frame is not None else pd.read_parquet(path)
    if frame.empty:
        raise DataError(f"input dataset {dataset_path} has no rows")
    governance = resolved.get("governance") or {}
    schema = profile_frame(frame, dataset_id=resolved["training"]["dataset"], platform="file",
                           location=str(dataset_path), fmt="parquet",
                           sensitive_columns=governance.get("sensitive_columns") or ())
    written = _scratch_folder() / "schema.json"
    written.write_text(schema.to_json(), encoding="utf-8")
    log.info("no schema input: profiled %s (%d columns)", dataset_path, len(schema.columns))
    return Standalone(resolved, str(path), str(written))


def training_form(settings: dict[str, Any] | str | None,
                  budget_seconds: int = -1) -> dict[str, Any] | str:
    """The training settings a ``train_model`` task reads (``TrainingSettings``: every field
    has a default, so ``{}`` is valid; or a whole run config), with ``budget_seconds`` on top
    when it is not -1. The step validates them (a bad value is a ConfigError naming it).
    Without a budget they pass through as they came (kfp.local hands a ParallelFor item's
    settings over as JSON text, which the step reads)."""
    if not _set(budget_seconds):
        return settings or {}
    if isinstance(settings, str):
        import json

        settings = json.loads(settings)
    data: dict[str, Any] = dict(settings) if isinstance(settings, dict) else {}
    budget = data.get("budget")
    data["budget"] = {**(budget if isinstance(budget, dict) else {}),
                      "max_runtime_secs": int(budget_seconds)}
    return data


# ------------------------------------------- components that read no dataset through the config


def stand_in_dataset(schema_path: str | None, fallback: str) -> str:
    """The dataset a run config names for a component that reads none through it (register,
    deploy, the governance components): the schema's own location when it is an absolute
    path or an object-store URI, else ``fallback`` (one of the component's input files).
    Nothing reads it; the config only has to be valid (``RunConfig`` requires a dataset)."""
    import json

    if schema_path and Path(schema_path).is_file():
        location = str(json.loads(Path(schema_path).read_text()).get("location") or "")
        if location.startswith(("/", "gs://", "s3://")) and "#" not in location:
            return location
    return fallback


def named_config(config: dict[str, Any] | None, model_name: str, *, what: str,
                 model_path: str | None = None, dataset_path: str, **form: Any) -> dict[str, Any]:
    """``form_config`` for a component that names a registered model (register, deploy):
    without a config, ``model_name`` is required (``what`` says which input to set); the
    target, when neither given nor in ``config``, is the model's own (``model_path``)."""
    if not _set(model_name) and not (config or {}).get("name"):
        raise ConfigError(f"{what}: no model name: set model_name (the registered model's name, "
                          "e.g. churn) or pass a run config")
    if model_path:
        return model_form_config(config, model_path, dataset_path, model_name=model_name, **form)
    return form_config(config, dataset_path=dataset_path, model_name=model_name, **form)


def plan_target(plan_path: str) -> str:
    """The target column a feature plan (``engineer_features``'s ``plan``) was made for."""
    import json

    return str(json.loads(Path(plan_path).read_text())["target"])


def with_policy(resolved: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    """The resolved run config with the typed ``values`` that are set (not "from config",
    -1 or empty) on top of its ``section`` (e.g. ``governance``), validated again. A
    ``sensitive_columns`` value is a comma-separated list."""
    from autokfp.config import parse_config

    given = {key: value for key, value in values.items() if _set(value)}
    if not given:
        return resolved
    if isinstance(given.get("sensitive_columns"), str):
        given["sensitive_columns"] = [name.strip() for name in
                                      given["sensitive_columns"].split(",") if name.strip()]
    data = dict(resolved)
    current = data.get(section)
    data[section] = {**(current if isinstance(current, dict) else {}), **given}
    return parse_config(data, origin="component inputs").to_dict()


def registered_model(registration_path: str, what: str) -> tuple[str, str]:
    """The model name and target column of a registration (``register_model``'s JSON), for
    a component used alone without a run config (``deploy_model``).

    Raises ConfigError naming the registration when it holds neither (one written before
    ``register_model`` recorded the target, e.g. a cached task of an older autokfp)."""
    import json

    record = json.loads(Path(registration_path).read_text(encoding="utf-8"))
    missing = [key for key in ("name", "target") if not record.get(key)]
    if missing:
        raise ConfigError(
            f"{what}: the registration {registration_path} names no {' and no '.join(missing)} "
            "(register_model records them since autokfp's components are usable alone); "
            "pass config (a run config with name and training.target), or register the "
            "model again")
    return str(record["name"]), str(record["target"])


# ------------------------------------------------------------ the drift-monitoring components

NO_CONFIG_SOURCE = "autokfp-no-config"
"""The source of the config a monitoring component makes when used alone: it names no real
data (the components read the champion and their input artifacts, not a dataset)."""


def no_data_config(name: str | None = None) -> dict[str, Any]:
    """A run config (as a dict) for a component used alone that reads no dataset through it:
    every setting at its default, and a stand-in dataset nothing reads (``RunConfig``
    requires one)."""
    data: dict[str, Any] = {
        "sources": [{"name": NO_CONFIG_SOURCE, "kind": "folder", "path": f"/{NO_CONFIG_SOURCE}"}],
        "training": {"dataset": f"{NO_CONFIG_SOURCE}/none", "target": "none"}}
    if name:
        data["name"] = name
    return data


def _named_in(path: str | None, key: str) -> str | None:
    import json

    if not path or not Path(path).is_file():
        return None
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8")).get(key)
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def monitoring_config(config: dict[str, Any] | None, *, what: str,
                      model_name: str = FROM_CONFIG, named_in: str | None = None,
                      name_key: str = "model", labels: str = FROM_CONFIG,
                      id_column: str = FROM_CONFIG, label_column: str = FROM_CONFIG,
                      **monitoring: Any) -> dict[str, Any]:
    """The run config a drift-monitoring component reads, used in autokfp's pipeline or alone.

    With ``config`` (autokfp's pipeline passes the resolved one) and no typed input set, the
    config as it is. Otherwise ``config``, or without one a config that names only the
    monitored model, with the typed inputs on top: ``model_name``; ``labels`` (where the
    ground truth arrives), ``id_column`` and ``label_column`` (its ``monitoring.labels``); and
    ``monitoring`` (``window_days``, ``drift_share``... of ``monitoring``; -1 keeps the
    config's or the default). Without ``model_name`` or a config, the model is the one named
    in the JSON artifact ``named_in`` under ``name_key`` (``collect_predictions``'s
    collection: ``model``; ``register_model``'s registration: ``name``).

    Raises ConfigError when no model is named (saying which input to set), when ``labels``
    are given with no id column to join them by, or for an out-of-range value (naming it, as
    ``autokfp monitor`` does)."""
    from autokfp.config import parse_config

    typed = {key: value for key, value in monitoring.items() if _set(value)}
    label_spec = {key: value.strip() for key, value in (("path", labels), ("id_column", id_column),
                                                        ("target", label_column)) if _set(value)}
    if config and not (typed or label_spec or _set(model_name)):
        return config
    name = model_name.strip() if _set(model_name) else None
    if name is None and not config:
        name = _named_in(named_in, name_key)
        if name is None:
            raise ConfigError(
                f"{what}: no model name: set model_name (the registered model whose champion "
                "is monitored, e.g. churn) or pass a run config")
    # the monitoring components read the champion, never the training data
    data = dict(config) if config else no_data_config()
    if name is not None:
        data["name"] = name
    if typed or label_spec:
        current = data.get("monitoring")
        section = {**(current if isinstance(current, dict) else {}), **typed}
        if label_spec:
            known = section.get("labels")
            section["labels"] = {**(known if isinstance(known, dict) else {}), **label_spec}
        data["monitoring"] = section
    resolved = parse_config(data, origin=f"{what} inputs")
    if label_spec.get("path") and not (resolved.monitoring.labels.id_column
                                       or resolved.training.id_column):
        raise ConfigError(
            f"{what}: labels are given ({label_spec['path']}) but no id column joins them to "
            "the logged predictions: set id_column (the column both share, e.g. customer_id)")
    return resolved.to_dict()


def read_reference_data(path: str, what: str) -> Any:
    """A reference dataset given as an input artifact (Parquet, a folder of Parquet parts, or
    CSV) as a DataFrame. Raises DataError when it is missing, empty or neither format."""
    import pandas as pd

    source = Path(path)
    if not source.exists():
        raise DataError(f"{what}: reference_data {path} does not exist: pass a Dataset "
                        "artifact holding the champion's training rows (Parquet or CSV)")
    if not _parquet(source):
        return _read_csv_input(source, f"{what}: reference_data {path}")
    frame = pd.read_parquet(source)
    if frame.empty:
        raise DataError(f"{what}: reference_data {path} has no rows")
    return frame


def engines_config(config: dict[str, Any] | None, *, engines: str = FROM_CONFIG,
                   budget_seconds: int = -1) -> dict[str, Any]:
    """The run config ``list_engines`` reads: ``config`` as it is when neither ``engines``
    (comma-separated names) nor ``budget_seconds`` is set, else with them on top; without a
    config, the default engines and budget (``no_data_config``). Raises ConfigError for an
    unknown engine or a bad budget, naming it."""
    if config and not (_set(engines) or _set(budget_seconds)):
        return config
    return apply_run_form(config or no_data_config("list-engines"), engines=engines,
                          budget_seconds=budget_seconds, origin="list_engines inputs").to_dict()
