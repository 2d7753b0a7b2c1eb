"""What monitoring compares: the champion's live window, its labels, and its reference.

* ``load_champion``: the registered champion with its feature plan and metadata (what its
  inputs are, which of them are numbers or categories, what it predicts).
* ``read_window``: the champion's logged predictions (``serving.prediction_log``) between two
  times, from ``<artifact root>/predictions/<service>/v<version>/date=YYYY-MM-DD/``. Rows
  logged by other versions are counted and described, never mixed in.
* ``read_labels`` / ``join_labels``: the ground truth that arrives later (CSV/Parquet files
  with the id and target columns), joined to the window by id.
* ``store_reference`` / ``resolve_reference``: the sample of the champion's training rows
  (with the champion's own predictions on them) that the window is compared with, kept at
  ``<artifact root>/monitoring/<model>/reference/v<version>.parquet``. It is written once per
  version and never replaced or deleted.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autokfp import storage
from autokfp.settings import Settings

log = logging.getLogger(__name__)

LABEL_COLUMN = "_autokfp_label"
OUTPUT_PREFIX = "output_"
LOG_COLUMNS = ("request_id", "model_version", "logged_at")
# requests whose id starts with this are a deploy's own checks (smoke test, latency), not traffic
VERIFICATION_PREFIX = "autokfp-verify"
LABEL_FORMATS = (".parquet", ".csv", ".jsonl", ".json")
# the status of a collected window (collect_predictions writes it, the later steps read it)
OK, EMPTY, TOO_FEW, NO_CHAMPION = "ok", "empty", "too-few-rows", "no-champion"
_DATE_PART = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


# ----------------------------------------------------------------------------- champion


@dataclass
class Champion:
    """The model version holding alias ``champion``, with what monitoring needs to know."""

    name: str
    version: str
    model_dir: Path
    plan: Any  # features.FeaturePlan
    meta: dict[str, Any]
    tags: dict[str, str]
    registered_at: datetime

    @property
    def service(self) -> str:
        from autokfp.serving.inference_service import service_name

        return service_name(self.name)

    @property
    def kinds(self) -> dict[str, str]:
        """Input columns the drift test compares, by kind (dates and free text are not).

        Numeric features stored as category codes (text or category dtype, few integers)
        are compared as categories: Evidently's choice for such columns.
        """
        from autokfp.monitoring.drift import CATEGORICAL, NUMERICAL

        coded = set(getattr(self.plan, "category_coded", None) or [])
        kinds = {c: CATEGORICAL if c in coded else NUMERICAL for c in self.plan.numeric}
        kinds.update({c: CATEGORICAL for c in self.plan.categorical + self.plan.boolean})
        return kinds

    @property
    def prediction_kinds(self) -> dict[str, str]:
        """The logged output columns whose distribution is compared (prediction drift)."""
        from autokfp.monitoring.drift import CATEGORICAL, NUMERICAL

        if self.meta["task"] == "regression":
            return {f"{OUTPUT_PREFIX}prediction": NUMERICAL}
        kinds = {f"{OUTPUT_PREFIX}prediction": CATEGORICAL}
        if self.meta["task"] == "binary":
            kinds[f"{OUTPUT_PREFIX}probability_{self.meta['class_labels'][1]}"] = NUMERICAL
        return kinds

    @property
    def test_metric(self) -> float | None:
        """The champion's held-out test value of its primary metric (from the registry)."""
        value = self.tags.get(f"metric.test_{self.meta['primary_metric']}")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    def summary(self) -> dict[str, Any]:
        """What a monitoring report says about the champion."""
        return {"version": self.version, "service": self.service,
                "registered_at": self.registered_at.isoformat(),
                "test_metric": self.test_metric, "deployment": self.tags.get("deployment")}


def load_champion(model_name: str, settings: Settings | None = None) -> Champion | None:
    """The current champion of ``model_name`` (downloaded from the registry), or None."""
    import mlflow.artifacts

    from autokfp.modeling import registry
    from autokfp.modeling.features import FeaturePlan

    client = registry.configure(settings)
    version = registry.champion_version(client, model_name)
    if version is None:
        return None
    local = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version.version}")
    )
    plan = FeaturePlan.from_json((local / "artifacts" / "plan.json").read_text())
    meta = json.loads((local / "artifacts" / "meta.json").read_text())
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
    return Champion(
        name=model_name,
        version=str(version.version),
        model_dir=local,
        plan=plan,
        meta=meta,
        tags=dict(version.tags),
        registered_at=created,
    )


# ------------------------------------------------------------------------------- window


SCHEDULED = "scheduled"
"""``window_end`` value meaning: end the window at the run's scheduled time."""


def _unsubstituted(text: str) -> bool:
    # a KFP placeholder that no backend filled in: ``{{$.pipeline_job_schedule_time_utc}}``
    # under kfp.local 2.17, or the v1 macro ``[[ScheduledTime]]`` that v2 leaves as is
    # (kubeflow/pipelines#12494)
    return text.startswith("{{") or text.startswith("[[")


def parse_time(text: str | None, default: datetime | None = None) -> datetime:
    """A point in time, in UTC.

    Accepts ISO 8601/RFC 3339 (``2026-01-09T13:00:00Z``, with fractions of a second or an
    offset: what the KFP v2 backend and newer kfp.local substitute for
    ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``), and ``YYYYMMDDhhmmss`` (the v1
    ``[[ScheduledTime]]`` form). Empty, ``now`` or a placeholder left unsubstituted gives
    ``default`` (else now); naive times are taken as UTC.
    """
    text = (text or "").strip()
    if not text or text.lower() == "now" or _unsubstituted(text):
        return default or datetime.now(timezone.utc)
    if re.fullmatch(r"\d{14}", text):
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise ValueError(
            f"'{text}' is not a time; use ISO 8601 such as 2025-06-30T12:00:00Z, "
            f"'now', or '{SCHEDULED}' (the run's scheduled time)"
        )
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def window_end_time(
    window_end: str | None, scheduled_time: str | None = None, default: datetime | None = None
) -> datetime:
    """The end of the monitoring window.

    ``window_end`` is a time (pins the window), ``now``/empty, or ``scheduled``: the run's
    scheduled time as KFP substituted it into ``scheduled_time`` (a recurring run's tick, so
    a rerun judges the same window; a one-off run's creation time). When ``scheduled_time``
    was not substituted (kfp.local) the window ends now.
    """
    text = (window_end or "").strip()
    if text.lower() == SCHEDULED:
        return parse_time(scheduled_time, default)
    return parse_time(text, default)


@dataclass
class Window:
    """The champion's logged rows between ``start`` and ``end`` and what else was found."""

    start: datetime
    end: datetime
    frame: pd.DataFrame
    other_versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: int = 0
    notes: list[str] = field(default_factory=list)


def prediction_log_base(root_uri: str, service: str) -> str:
    return storage.join(root_uri, "predictions", service)


def _in_dates(uri: str, start: datetime, end: datetime) -> bool:
    match = _DATE_PART.search(uri)
    if not match:
        return True
    day = datetime.strptime(match.group(1), "%Y-%m-%d").date()
    return start.date() <= day <= end.date()


def _read_parquet(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_bytes(uri)), columns=columns)


def other_version_notes(other_versions: dict[str, dict[str, Any]],
                        champion: Champion) -> list[str]:
    """A note per other version that logged rows in the window (they are never compared)."""
    required = list(champion.plan.input_columns)
    notes = []
    for version, seen in other_versions.items():
        columns = [c for c in seen["columns"]
                   if not c.startswith(OUTPUT_PREFIX) and c not in LOG_COLUMNS]
        extra = sorted(set(columns) - set(required) - set(champion.plan.dropped))
        lacking = sorted(set(required) - set(columns))
        differs = (
            f" and other columns (extra {extra}, lacking {lacking})" if extra or lacking else ""
        )
        notes.append(
            f"{seen['rows']} rows in the window were logged by v{version}{differs}; they are not "
            f"compared: only the champion v{champion.version}'s own predictions are"
        )
    return notes


def window_status(rows: int, min_rows: int, model: str, version: str, start: datetime,
                  end: datetime) -> tuple[str, str]:
    """(status, reason) of a window of ``rows`` predictions: OK, EMPTY or TOO_FEW."""
    if rows == 0:
        return EMPTY, (f"no predictions of {model} v{version} were logged "
                       f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC: "
                       "there is nothing to compare")
    if rows < min_rows:
        return TOO_FEW, (f"only {rows} predictions were logged in the window, fewer than "
                         f"monitoring.min_window_rows ({min_rows}): too few to judge")
    return OK, f"{rows} predictions of v{version} in the window"


def read_window(
    root_uri: str, service: str, version: str, start: datetime, end: datetime
) -> Window:
    """The rows version ``version`` of ``service`` logged in [start, end), oldest first."""
    base = prediction_log_base(root_uri, service)
    window = Window(start=start, end=end, frame=pd.DataFrame())
    frames = []
    other: dict[str, dict[str, Any]] = {}
    for uri in storage.list_uris(base):
        if not uri.endswith(".parquet") or not _in_dates(uri, start, end):
            continue
        relative = uri[len(base) :].lstrip("/")
        folder = relative.split("/", 1)[0]
        try:
            batch = _read_parquet(uri)
        except Exception as exc:  # noqa: BLE001 - one unreadable batch must not hide the rest
            window.notes.append(
                f"skipped unreadable prediction batch {uri}: {type(exc).__name__}: {exc}"
            )
            continue
        if "logged_at" in batch.columns:
            logged = pd.to_datetime(batch["logged_at"], utc=True)
            batch = batch[(logged >= start) & (logged < end)]
        if batch.empty:
            continue
        if folder == f"v{version}":
            frames.append(batch)
            window.files += 1
            continue
        seen = other.setdefault(folder.removeprefix("v"), {"rows": 0, "columns": set()})
        seen["rows"] += len(batch)
        seen["columns"].update(batch.columns)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        if "logged_at" in frame.columns:
            frame = frame.sort_values("logged_at", kind="stable").reset_index(drop=True)
        if "request_id" in frame.columns:
            checks = frame["request_id"].astype(str).str.startswith(VERIFICATION_PREFIX)
            if checks.any():
                window.notes.append(
                    f"{int(checks.sum())} rows of deploy verification requests "
                    "(smoke and latency checks) are not traffic: left out"
                )
                frame = frame[~checks].reset_index(drop=True)
        window.frame = frame
    window.other_versions = {
        v: {"rows": d["rows"], "columns": sorted(d["columns"])} for v, d in sorted(other.items())
    }
    return window


# ------------------------------------------------------------------------------- labels


@dataclass
class Labels:
    frame: pd.DataFrame | None
    note: str


def read_labels(path: str | None, id_column: str | None, target: str) -> Labels:
    """Ground truth as (id, label) rows, or None with the reason (absent, unreadable...)."""
    if not path:
        return Labels(None, "no label source is configured (monitoring.labels.path)")
    if not id_column:
        return Labels(
            None, "labels cannot be joined: set monitoring.labels.id_column or training.id_column"
        )
    try:
        if storage.exists(path) and path.lower().endswith(LABEL_FORMATS):
            uris = [path]
        else:
            uris = [u for u in storage.list_uris(path) if u.lower().endswith(LABEL_FORMATS)]
    except Exception as exc:  # noqa: BLE001 - an unreachable label store means "no labels yet"
        return Labels(None, f"labels at {path} cannot be listed: {exc}")
    if not uris:
        return Labels(None, f"no labels have arrived: nothing at {path}")
    frames = []
    for uri in uris:
        data = storage.read_bytes(uri)
        try:
            if uri.lower().endswith(".parquet"):
                frame = pd.read_parquet(io.BytesIO(data))
            elif uri.lower().endswith(".csv"):
                frame = pd.read_csv(io.BytesIO(data))
            else:
                frame = pd.read_json(io.BytesIO(data), lines=uri.lower().endswith(".jsonl"))
        except Exception as exc:  # noqa: BLE001
            return Labels(None, f"label file {uri} cannot be read: {type(exc).__name__}: {exc}")
        missing = [c for c in (id_column, target) if c not in frame.columns]
        if missing:
            return Labels(
                None,
                f"label file {uri} lacks column(s) {missing} (has {list(frame.columns)}); "
                "set monitoring.labels.id_column / target",
            )
        frames.append(frame[[id_column, target]])
    labels = pd.concat(frames, ignore_index=True).dropna(subset=[target])
    labels[id_column] = labels[id_column].astype(str)
    labels = labels.drop_duplicates(subset=[id_column], keep="last")
    return Labels(labels, f"{len(labels)} labelled ids in {len(uris)} file(s) at {path}")


def join_labels(
    frame: pd.DataFrame, labels: Labels, id_column: str | None, target: str
) -> tuple[pd.DataFrame, str]:
    """The window with ``LABEL_COLUMN`` added (missing where no label arrived)."""
    frame = frame.copy()
    frame[LABEL_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="object")
    if labels.frame is None or frame.empty:
        return frame, labels.note
    if id_column not in frame.columns:
        return frame, (
            f"labels cannot be joined: the logged requests carry no '{id_column}' column; "
            "send the id with each request (it is ignored by the model)"
        )
    # object dtype: a window row without a label must not turn integer labels into floats
    # (1 -> 1.0 -> "1.0", which matches no class label and silently skips performance)
    lookup = labels.frame.set_index(id_column)[target].astype(object)
    frame[LABEL_COLUMN] = frame[id_column].astype(str).map(lookup).astype("object")
    matched = int(frame[LABEL_COLUMN].notna().sum())
    return frame, f"{matched} of {len(frame)} window rows have a label ({labels.note})"


# ---------------------------------------------------------------------------- reference


def reference_uri(root_uri: str, model_name: str, version: str) -> str:
    return storage.join(root_uri, "monitoring", model_name, "reference", f"v{version}.parquet")


def score_reference(rows: pd.DataFrame, model_dir: str | Path) -> pd.DataFrame:
    """The model's predictions on ``rows``, named like the prediction log (``output_*``)."""
    from autokfp.modeling.model_package import load_model_package

    predictions = load_model_package(str(model_dir)).predict(rows)
    return predictions.add_prefix(OUTPUT_PREFIX).reset_index(drop=True)


def store_reference(
    model_name: str,
    version: str | int,
    rows: pd.DataFrame,
    model_dir: str | Path | None = None,
    settings: Settings | None = None,
    max_rows: int = 50_000,
    source: str = "training rows",
) -> str:
    """Keep a sample of the rows a model version was trained on as its monitoring reference.

    Call it once a version is registered (the training or held-out rows, with the target
    column or without). With ``model_dir`` the version's own predictions on the sample are
    stored too (for prediction drift). Written once: an existing reference is kept as is,
    so reruns are harmless. Returns the reference URI.
    """
    settings = settings or Settings.from_env()
    uri = reference_uri(settings.artifact_root, model_name, str(version))
    if storage.exists(uri):
        return uri
    sample = rows.sample(n=max_rows, random_state=0) if len(rows) > max_rows else rows
    sample = sample.reset_index(drop=True)
    outputs = [c for c in sample.columns if c.startswith(OUTPUT_PREFIX)]
    if model_dir is not None and not outputs:
        try:
            sample = pd.concat([sample, score_reference(sample, model_dir)], axis=1)
        except Exception as exc:  # noqa: BLE001 - inputs alone are still a reference
            log.warning(
                "reference of %s v%s kept without predictions: %s", model_name, version, exc
            )
    buffer = io.BytesIO()
    parquet_safe(sample).to_parquet(buffer, index=False)
    storage.write_bytes(uri, buffer.getvalue())
    meta = {
        "model": model_name,
        "version": str(version),
        "rows": len(sample),
        "source": source,
        "source_rows": len(rows),
        "created": datetime.now(timezone.utc).isoformat(),
        "columns": list(sample.columns),
    }
    storage.write_text(uri.removesuffix(".parquet") + ".json", json.dumps(meta, indent=2))
    log.info(
        "stored the monitoring reference of %s v%s (%d rows from %s)",
        model_name,
        version,
        len(sample),
        source,
    )
    return uri


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else str(value)


def category_text(value: Any) -> str | None:
    """One text form per category value: 2.0 and 2 are "2", True is "True", missing is None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        if value != value:
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def normalise_kinds(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numbers as float64 and categories as text on both sides, whatever the log stored."""
    from autokfp.monitoring.drift import NUMERICAL

    frame = frame.copy()
    for column, kind in kinds.items():
        if column not in frame.columns:
            continue
        if kind == NUMERICAL:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        else:
            # missing stays missing (not the category "nan"): drift leaves it out
            frame[column] = frame[column].map(category_text, na_action="ignore").astype("object")
    return frame


def parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:  # mixed object columns cannot be written as Parquet
        if frame[column].dtype == object:
            frame[column] = frame[column].map(_text)
    return frame


@dataclass
class Reference:
    frame: pd.DataFrame | None
    source: str  # stored | training-data | missing
    note: str


def _dataset_modified_at(config: Any, dataset_id: str) -> datetime | None:
    """When a folder source's file last changed (None for tables and remote objects)."""
    from autokfp.config import FolderSource

    source_name, _, relative = dataset_id.partition("/")
    try:
        source = config.source(source_name)
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(source, FolderSource):
        return None
    path = Path(source.path) / relative
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def resolve_reference(
    config: Any, champion: Champion, settings: Settings | None = None
) -> Reference:
    """The champion's reference: the stored sample, else (``auto``/``training-data``) its
    training dataset if it is provably unchanged since the champion was registered."""
    settings = settings or Settings.from_env()
    spec = config.monitoring
    uri = reference_uri(settings.artifact_root, champion.name, champion.version)
    if spec.reference in ("auto", "stored") and storage.exists(uri):
        return Reference(_read_parquet(uri), "stored", f"stored reference {uri}")
    if spec.reference == "stored":
        return Reference(
            None,
            "missing",
            f"no stored reference for {champion.name} v{champion.version} "
            f"at {uri}; store one with autokfp.monitoring.window."
            "store_reference, or set monitoring.reference: auto",
        )
    dataset_id = champion.tags.get("dataset")
    if not dataset_id:
        return Reference(
            None,
            "missing",
            f"{champion.name} v{champion.version} has no 'dataset' tag: "
            "its training data is unknown",
        )
    modified = _dataset_modified_at(config, dataset_id)
    if modified is not None and modified > champion.registered_at:
        return Reference(
            None,
            "missing",
            (
                f"no stored reference for v{champion.version}, and its training dataset "
                f"'{dataset_id}' changed at {modified:%Y-%m-%d %H:%M:%S} UTC, after "
                f"v{champion.version} was registered ({champion.registered_at:%Y-%m-%d %H:%M:%S} "
                "UTC): it no longer shows what the model learnt from. Store references at "
                "registration (store_reference)"
            ),
        )
    return _training_reference(config, champion, settings, dataset_id, modified is None)


def _training_reference(config: Any, champion: Champion, settings: Settings, dataset_id: str,
                        change_time_unknown: bool) -> Reference:
    """The champion's training dataset as its reference (stored when ``reference: auto``)."""
    spec = config.monitoring
    uri = reference_uri(settings.artifact_root, champion.name, champion.version)
    from autokfp.catalog.discovery import load_dataset

    try:
        frame, schema = load_dataset(config, dataset_id)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: drift is then unavailable
        return Reference(
            None,
            "missing",
            f"the champion's training dataset '{dataset_id}' cannot be loaded: {exc}",
        )
    expected = champion.tags.get("dataset_fingerprint")
    if expected and schema.fingerprint != expected:
        return Reference(
            None,
            "missing",
            (
                f"the champion's training dataset '{dataset_id}' has another schema now "
                f"(fingerprint {schema.fingerprint}, trained on {expected}); "
                "it is not a valid reference"
            ),
        )
    note = f"training dataset '{dataset_id}' ({len(frame)} rows)"
    if change_time_unknown:
        note += "; its change time is unknown, taken as unchanged since registration"
    if spec.reference == "auto":  # keep it: later runs compare with the same rows
        store_reference(
            champion.name,
            champion.version,
            frame,
            champion.model_dir,
            settings,
            max_rows=spec.reference_rows,
            source=f"training dataset '{dataset_id}'",
        )
        return Reference(_read_parquet(uri), "training-data", note + f"; stored as {uri}")
    sample = (
        frame.sample(n=spec.reference_rows, random_state=0)
        if len(frame) > spec.reference_rows
        else frame
    )
    sample = sample.reset_index(drop=True)
    try:
        sample = pd.concat([sample, score_reference(sample, champion.model_dir)], axis=1)
    except Exception as exc:  # noqa: BLE001
        note += f"; the champion could not score it ({exc}), so prediction drift is unavailable"
    return Reference(sample, "training-data", note)
