"""The data quality gate: checks that decide whether a dataset is fit to train on.

Every check has a status (``pass``, ``warn`` or ``fail``) and a message that names the
column or setting involved and what to do. Training stops on any failure; warnings are
reported and kept in the run's artifacts. ``raise_for_failures`` raises one error listing
every failed check, so a user fixes them in one pass instead of one per run.

Two checks compare with what the catalog knows (``schema.catalog``, filled in by the
discover step): freshness (how old the newest data is: the file's modification time, or
the newest value of a datetime column) and the row count against the last crawl. Their
thresholds are module constants (``FRESHNESS_WARN_DAYS``, ``ROW_COUNT_WARN_CHANGE``,
``ROW_COUNT_FAIL_DROP``) until the run config has settings for them.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from autokfp.catalog.schema import DatasetSchema
from autokfp.config import QualitySpec, RunConfig
from autokfp.errors import DataError, QualityGateError, plain

log = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail"]

DUPLICATE_ROWS_WARN_FRACTION = 0.01
FRESHNESS_WARN_DAYS = 30.0
ROW_COUNT_WARN_CHANGE = 0.5  # |rows - previous| / previous at which the gate warns
ROW_COUNT_FAIL_DROP = 0.9  # losing this share of the rows looks like a truncated export
_MAX_EXAMPLES = 5


@dataclass
class QualityCheck:
    """One check's outcome."""

    name: str
    status: Status
    message: str
    column: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "column": self.column,
            "details": self.details,
        }


@dataclass
class QualityReport:
    """All checks run on one dataset."""

    dataset_id: str
    rows: int
    columns: int
    checks: list[QualityCheck]
    schema: DatasetSchema | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[QualityCheck]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def warnings(self) -> list[QualityCheck]:
        return [c for c in self.checks if c.status == "warn"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "passed": self.passed,
            "rows": self.rows,
            "columns": self.columns,
            "counts": {
                status: sum(c.status == status for c in self.checks)
                for status in ("pass", "warn", "fail")
            },
            "fingerprint": self.schema.fingerprint if self.schema else None,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_html(self) -> str:
        """A self-contained HTML page: the checks, then the per-column profile."""
        return _render_html(self)


class _Table(Protocol):
    """What the checks read of a dataset: its size, its columns one at a time, the share
    of missing values per column and the count of duplicate rows (a pandas frame, or a
    Parquet file read in batches)."""

    rows: int
    columns: list[str]

    def column(self, name: str) -> pd.Series: ...

    def missing_fractions(self, names: list[str]) -> pd.Series: ...

    def duplicate_rows(self) -> int: ...


class _FrameTable:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.rows = len(frame)
        self.columns = list(frame.columns)

    def column(self, name: str) -> pd.Series:
        return self.frame[name]

    def missing_fractions(self, names: list[str]) -> pd.Series:
        return self.frame[names].isna().mean()

    def duplicate_rows(self) -> int:
        try:
            return int(self.frame.duplicated().sum())
        except TypeError:  # unhashable cells (lists from JSON): compare their text
            return int(self.frame.astype(str).duplicated().sum())


class _ParquetTable:
    """A Parquet file read in Arrow batches, never whole: one pass counts the missing values
    and hashes every row (8 bytes a row); a check that needs a column reads that column
    alone, typed as ``pd.read_parquet`` types it in the whole file."""

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        from autokfp.catalog.batches import file_dtypes

        self.path = str(path)
        handle = pq.ParquetFile(self.path)
        self.rows = handle.metadata.num_rows
        self.columns = [str(c) for c in handle.schema_arrow.empty_table().to_pandas().columns]
        self.dtypes = file_dtypes(self.path)
        self._missing: pd.Series | None = None
        self._duplicates: int | None = None

    def column(self, name: str) -> pd.Series:
        series = pd.read_parquet(self.path, columns=[name])[name]
        return series.astype(self.dtypes[name]) if name in self.dtypes else series

    def _scan(self) -> None:
        import pyarrow.parquet as pq

        from autokfp.catalog.batches import BATCH_ROWS, batch_frame

        handle = pq.ParquetFile(self.path)
        missing = pd.Series(0, index=self.columns, dtype="int64")
        hashes = []
        for batch in handle.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            frame = batch_frame(batch, handle.schema_arrow, self.dtypes)
            missing = missing.add(frame.isna().sum(), fill_value=0)
            try:
                hashed = pd.util.hash_pandas_object(frame, index=False)
            except TypeError:  # unhashable cells (lists from JSON): hash their text
                hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
            hashes.append(hashed.to_numpy(dtype=np.uint64))
        self._missing = missing / max(self.rows, 1)
        every = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        # two different rows with one 64-bit hash: rarer than one in 10**6 at 10M rows
        self._duplicates = int(len(every) - len(np.unique(every)))

    def missing_fractions(self, names: list[str]) -> pd.Series:
        if self._missing is None:
            self._scan()
        assert self._missing is not None
        return self._missing[names].astype("float64")

    def duplicate_rows(self) -> int:
        if self._duplicates is None:
            self._scan()
        assert self._duplicates is not None
        return self._duplicates


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _examples(values: pd.Series) -> str:
    shown = [repr(v) for v in values.head(_MAX_EXAMPLES).tolist()]
    return ", ".join(shown) + (", ..." if len(values) > _MAX_EXAMPLES else "")


def _classification_task(target: pd.Series, requested: str) -> str:
    from autokfp.modeling.tasks import infer_task

    return infer_task(target, requested)


def _check_rows(df: _Table, config: RunConfig) -> QualityCheck:
    minimum = config.quality.min_rows
    if df.rows < minimum:
        return QualityCheck(
            "min_rows",
            "fail",
            f"{config.training.dataset} has {df.rows} rows, fewer than quality.min_rows="
            f"{minimum}; supply more data or lower quality.min_rows",
            details={"rows": df.rows, "min_rows": minimum},
        )
    return QualityCheck(
        "min_rows",
        "pass",
        f"{df.rows} rows (minimum {minimum})",
        details={"rows": df.rows, "min_rows": minimum},
    )


def _check_target(df: _Table, config: RunConfig) -> list[QualityCheck]:
    target = config.training.target
    if target not in df.columns:
        available = ", ".join(map(str, df.columns))
        return [
            QualityCheck(
                "target_present",
                "fail",
                f"target column '{target}' is not in {config.training.dataset}; the columns "
                f"are: {available}. Set training.target to one of them",
                column=target,
            )
        ]
    checks = [
        QualityCheck("target_present", "pass", f"target column '{target}' present", column=target)
    ]
    series = df.column(target)
    checks.append(_check_target_missing(series, target, config))
    values = series.dropna()
    distinct = int(values.nunique())
    if distinct < 2:
        what = "has no values" if distinct == 0 else f"is constant ({plain(values.iloc[0])!r})"
        checks.append(
            QualityCheck(
                "target_not_constant",
                "fail",
                f"target '{target}' {what}: there is nothing to learn; check the export or "
                "pick another training.target",
                column=target,
                details={"distinct": distinct},
            )
        )
        return checks
    checks.append(
        QualityCheck(
            "target_not_constant",
            "pass",
            f"target '{target}' has {distinct} distinct values",
            column=target,
            details={"distinct": distinct},
        )
    )

    try:
        task = _classification_task(values, config.training.task)
    except DataError as exc:
        checks.append(QualityCheck("target_task", "fail", str(exc), column=target))
        return checks
    if task in ("binary", "multiclass"):
        checks.append(_check_class_counts(values, target, task, config))
    return checks


def _check_target_missing(series: pd.Series, target: str, config: RunConfig) -> QualityCheck:
    missing = int(series.isna().sum())
    fraction = missing / len(series) if len(series) else 1.0
    allowed = config.quality.max_target_missing_fraction
    details = {"missing": missing, "fraction": fraction, "allowed": allowed}
    if fraction > allowed:
        return QualityCheck(
            "target_missing",
            "fail",
            f"target '{target}' is missing in {missing} of {len(series)} rows "
            f"({_percent(fraction)}), above quality.max_target_missing_fraction="
            f"{allowed}; drop or label those rows, or raise the setting",
            column=target,
            details=details,
        )
    return QualityCheck(
        "target_missing",
        "pass",
        f"target '{target}' missing in {missing} rows",
        column=target,
        details=details,
    )


def _check_class_counts(values: pd.Series, target: str, task: str,
                        config: RunConfig) -> QualityCheck:
    counts = values.astype(str).value_counts()
    minimum = config.quality.min_class_count
    small = counts[counts < minimum]
    details = {"task": task, "class_counts": {str(k): int(v) for k, v in counts.items()}}
    if len(small):
        listed = ", ".join(f"{k!r}: {v}" for k, v in small.items())
        return QualityCheck(
            "class_counts",
            "fail",
            f"target '{target}' ({task}) has classes with fewer than "
            f"quality.min_class_count={minimum} rows ({listed}); collect more rows of "
            "those classes, merge them, or lower the setting",
            column=target,
            details=details,
        )
    return QualityCheck(
        "class_counts",
        "pass",
        f"every class of '{target}' has >= {minimum} rows",
        column=target,
        details=details,
    )


def _id_columns(schema: DatasetSchema | None, config: RunConfig) -> list[str]:
    if config.training.id_column:
        return [config.training.id_column]
    if schema is None:
        return []
    return [
        c.name
        for c in schema.columns
        if c.semantic_type == "id" and c.name != config.training.target
    ]


def _check_missing(
    df: _Table, config: RunConfig, id_columns: list[str]
) -> list[QualityCheck]:
    target = config.training.target
    features = [c for c in df.columns if c != target and c not in id_columns]
    if not features:
        return [
            QualityCheck(
                "usable_features",
                "fail",
                f"{config.training.dataset} has no feature columns besides the target and ids; "
                "supply a dataset with input columns",
            )
        ]
    fractions = df.missing_fractions(features) if df.rows else pd.Series(1.0, index=features)
    warn_at = config.quality.max_missing_fraction
    fail_at = config.quality.fail_on_missing_fraction
    high = fractions[fractions > warn_at].sort_values(ascending=False)
    details = {
        "columns": {str(k): float(v) for k, v in high.items()},
        "max_missing_fraction": warn_at,
    }
    checks = []
    if len(high):
        listed = ", ".join(f"{k} ({_percent(v)})" for k, v in high.items())
        checks.append(
            QualityCheck(
                "missing_values",
                "warn",
                f"{len(high)} column(s) are missing in more than {_percent(warn_at)} of rows "
                f"(quality.max_missing_fraction): {listed}; they add little and may be dropped",
                details=details,
            )
        )
    else:
        checks.append(
            QualityCheck(
                "missing_values",
                "pass",
                f"no feature column is missing in more than {_percent(warn_at)} of rows",
                details=details,
            )
        )
    if bool((fractions >= fail_at).all()):
        checks.append(
            QualityCheck(
                "usable_features",
                "fail",
                f"every feature column is missing in at least {_percent(fail_at)} of rows "
                "(quality.fail_on_missing_fraction); check the export that writes "
                f"{config.training.dataset}",
            )
        )
    else:
        usable = int((fractions < fail_at).sum())
        checks.append(
            QualityCheck(
                "usable_features", "pass", f"{usable} of {len(features)} feature columns are usable"
            )
        )
    return checks


def _check_ids(df: _Table, config: RunConfig, id_columns: list[str]) -> list[QualityCheck]:
    checks = []
    for column in id_columns:
        name = f"id_unique:{column}"
        if column not in df.columns:
            checks.append(
                QualityCheck(
                    name,
                    "fail",
                    f"id column '{column}' (training.id_column) is not in "
                    f"{config.training.dataset}; the columns are: "
                    f"{', '.join(map(str, df.columns))}. Fix or remove training.id_column",
                    column=column,
                )
            )
            continue
        every = df.column(column)
        values = every.dropna()
        duplicated = values[values.duplicated(keep=False)]
        repeated = duplicated.drop_duplicates()
        nulls = int(every.isna().sum())
        del every, values
        details = {"duplicate_rows": int(len(duplicated)), "null_ids": nulls}
        if len(repeated):
            checks.append(
                QualityCheck(
                    name,
                    "fail",
                    f"id column '{column}' has {len(repeated)} value(s) repeated across "
                    f"{len(duplicated)} rows (e.g. {_examples(repeated)}); de-duplicate the "
                    "export or set training.id_column to a unique key",
                    column=column,
                    details=details,
                )
            )
        elif nulls:
            checks.append(
                QualityCheck(
                    name,
                    "warn",
                    f"id column '{column}' is empty in {nulls} rows",
                    column=column,
                    details=details,
                )
            )
        else:
            checks.append(
                QualityCheck(
                    name, "pass", f"id column '{column}' is unique", column=column, details=details
                )
            )
    return checks


def _check_duplicate_rows(df: _Table) -> QualityCheck:
    if df.rows == 0 or not df.columns:
        return QualityCheck("duplicate_rows", "pass", "no rows to compare")
    duplicated = df.duplicate_rows()
    fraction = duplicated / df.rows
    details = {"duplicate_rows": duplicated, "fraction": fraction}
    if fraction > DUPLICATE_ROWS_WARN_FRACTION:
        return QualityCheck(
            "duplicate_rows",
            "warn",
            f"{duplicated} rows ({_percent(fraction)}) are exact duplicates of earlier rows; "
            "they over-weight those examples and leak between train and test splits",
            details=details,
        )
    return QualityCheck(
        "duplicate_rows",
        "pass",
        f"{duplicated} duplicate rows ({_percent(fraction)})",
        details=details,
    )


def _timestamp(value: Any) -> pd.Timestamp | None:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _check_freshness(schema: DatasetSchema, now: pd.Timestamp | None = None) -> QualityCheck:
    """How old the newest data is: the file's modification time, else the newest date."""
    now = now or pd.Timestamp.now(tz="UTC")
    newest, origin = _timestamp(schema.modified_at), "the file was last modified"
    if newest is None:
        dates = [(stamp, c.name) for c in schema.columns if c.semantic_type == "datetime"
                 for stamp in [_timestamp(c.max)] if stamp is not None and stamp <= now]
        if dates:
            newest, column = max(dates)
            origin = f"the newest value of datetime column '{column}'"
    if newest is None:
        return QualityCheck("freshness", "pass",
                            "no modification time or datetime column: freshness not measured",
                            details={"measured": False})
    age = max(0.0, (now - newest).total_seconds() / 86_400)
    details = {"newest": newest.isoformat(), "age_days": round(age, 1),
               "warn_days": FRESHNESS_WARN_DAYS}
    if age > FRESHNESS_WARN_DAYS:
        return QualityCheck(
            "freshness", "warn",
            f"{origin} is {age:.0f} days old ({newest.date()}), more than "
            f"{FRESHNESS_WARN_DAYS:.0f} days: check that the export feeding "
            f"{schema.dataset_id} still runs", details=details)
    return QualityCheck("freshness", "pass", f"{origin} is {age:.1f} days old",
                        details=details)


def _check_row_count_change(df: _Table, schema: DatasetSchema) -> QualityCheck:
    previous = (schema.catalog or {}).get("previous_row_count")
    rows = df.rows
    if not previous:
        return QualityCheck("row_count_change", "pass",
                            "no earlier crawl of this dataset to compare the row count with",
                            details={"rows": rows, "previous": None})
    change = (rows - previous) / previous
    details = {"rows": rows, "previous": int(previous), "change": round(change, 4)}
    if change <= -ROW_COUNT_FAIL_DROP:
        return QualityCheck(
            "row_count_change", "fail",
            f"{schema.dataset_id} has {rows} rows, {_percent(-change)} fewer than the "
            f"{previous} of the last crawl: this looks like a truncated or partial export. "
            "Fix the export; if the smaller dataset is intended, run again (the catalog now "
            f"records {rows} rows)", details=details)
    if abs(change) >= ROW_COUNT_WARN_CHANGE:
        direction = "more" if change > 0 else "fewer"
        return QualityCheck(
            "row_count_change", "warn",
            f"{schema.dataset_id} has {rows} rows, {_percent(abs(change))} {direction} than "
            f"the {previous} of the last crawl", details=details)
    return QualityCheck("row_count_change", "pass",
                        f"{rows} rows ({change:+.1%} against the last crawl's {previous})",
                        details=details)


def _policy_status(bad: int, rows: int, config: RunConfig) -> Status:
    if bad == 0:
        return "pass"
    return "warn" if bad / max(rows, 1) <= config.quality.max_out_of_policy_fraction else "fail"


def _check_ranges(df: _Table, config: RunConfig) -> list[QualityCheck]:
    """Every value of a column named in ``quality.ranges`` lies within [min, max]."""
    checks = []
    for column, (low, high) in config.quality.ranges.items():
        name = "range"
        if column not in df.columns:
            checks.append(QualityCheck(name, "fail", f"quality.ranges names column '{column}', which "
                                       f"is not in the data; fix the setting", column=column))
            continue
        series = df.column(column)
        values = pd.to_numeric(series, errors="coerce")
        not_numeric = int((series.notna() & values.isna()).sum())
        below = int((values < low).sum()) if low is not None else 0
        above = int((values > high).sum()) if high is not None else 0
        bad = below + above + not_numeric
        status = _policy_status(bad, df.rows, config)
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        if bad == 0:
            message = f"'{column}' lies within {bounds}"
        else:
            examples = _examples(series[(values < (low if low is not None else -np.inf))
                                        | (values > (high if high is not None else np.inf))
                                        | (series.notna() & values.isna())])
            message = (f"'{column}' has {bad} value(s) outside {bounds} ({below} below, {above} above, "
                       f"{not_numeric} not numeric), e.g. {examples}; fix the source or widen "
                       "quality.ranges")
        checks.append(QualityCheck(name, status, message, column=column,
                                   details={"below": below, "above": above, "not_numeric": not_numeric}))
    return checks


def _check_allowed_categories(df: _Table, config: RunConfig) -> list[QualityCheck]:
    """Every value of a column named in ``quality.allowed_categories`` is one of its values."""
    checks = []
    for column, allowed in config.quality.allowed_categories.items():
        name = "allowed_categories"
        if column not in df.columns:
            checks.append(QualityCheck(name, "fail", f"quality.allowed_categories names column "
                                       f"'{column}', which is not in the data; fix the setting",
                                       column=column))
            continue
        values = df.column(column).dropna().astype(str)
        unexpected = values[~values.isin(set(map(str, allowed)))]
        bad = len(unexpected)
        status = _policy_status(bad, df.rows, config)
        if bad == 0:
            message = f"'{column}' holds only allowed values"
        else:
            counts = unexpected.value_counts().head(5)
            listed = ", ".join(f"{v!r} x{n}" for v, n in counts.items())
            message = (f"'{column}' has {bad} value(s) not in {sorted(map(str, allowed))}: {listed}; "
                       "fix the source or extend quality.allowed_categories")
        checks.append(QualityCheck(name, status, message, column=column,
                                   details={"unexpected": int(bad)}))
    return checks


def run_quality_gate(
    data: pd.DataFrame | str | Path, schema: DatasetSchema | None, config: RunConfig
) -> QualityReport:
    """Run every quality check on a dataset.

    Args:
        data: the full training data: a frame, or the path of a Parquet file, which is
            read in Arrow batches and one column at a time, never whole (the verdicts are
            the frame's; duplicate rows are counted by a 64-bit hash of each row).
        schema: its profile (supplies id columns and the HTML column table); ``None``
            profiles ``df`` here.
        config: the run configuration (``training`` and ``quality`` settings).

    Returns:
        A report with one entry per check; ``report.passed`` is False if any failed.

    Example:
        >>> report = run_quality_gate(df, schema, config)
        >>> raise_for_failures(report)
    """
    if schema is None:
        from autokfp.catalog.profiling import profile_frame

        if not isinstance(data, pd.DataFrame):
            raise DataError("run_quality_gate needs the dataset's schema to check a Parquet file")
        schema = profile_frame(data, config.training.dataset, "unknown", "")
    df = _FrameTable(data) if isinstance(data, pd.DataFrame) else _ParquetTable(data)
    id_columns = _id_columns(schema, config)
    checks = [_check_rows(df, config)]
    checks += _check_target(df, config)
    checks += _check_missing(df, config, id_columns)
    checks += _check_ids(df, config, id_columns)
    checks.append(_check_duplicate_rows(df))
    checks.append(_check_freshness(schema))
    checks.append(_check_row_count_change(df, schema))
    checks += _check_ranges(df, config)
    checks += _check_allowed_categories(df, config)
    report = QualityReport(
        dataset_id=schema.dataset_id,
        rows=df.rows,
        columns=len(df.columns),
        checks=checks,
        schema=schema,
    )
    for check in report.failures:
        log.warning("quality gate: %s failed: %s", check.name, check.message)
    for check in report.warnings:
        log.info("quality gate: %s warns: %s", check.name, check.message)
    return report


def raise_for_failures(report: QualityReport) -> None:
    """Raise QualityGateError listing EVERY failed check (no-op when all passed)."""
    failures = report.failures
    if not failures:
        return
    lines = [f"{c.name}: {c.message}" for c in failures]
    listing = "\n  - ".join(lines)
    raise QualityGateError(
        f"data quality gate failed for {report.dataset_id} ({len(failures)} check(s)):\n"
        f"  - {listing}",
        failures=lines,
    )


def evidently_summary_html(
    df: pd.DataFrame, path: str | Path, schema: DatasetSchema | None = None
) -> Path:
    """Save an Evidently ``DataSummaryPreset`` report of ``df`` as HTML.

    With ``schema``, column roles come from its semantic types (ids, numbers, categories,
    dates, text) instead of Evidently's own guess. Takes a few seconds at 10k rows; the
    first call in a process also pays Evidently's import (~5 s).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    data: Any = df
    if schema is not None:
        roles: dict[str, list[str]] = {"numeric": [], "categorical": [], "datetime": [], "text": []}
        id_column = None
        for column in schema.columns:
            if column.name not in df.columns:
                continue
            kind = column.semantic_type
            if kind == "id" and id_column is None:
                id_column = column.name
            elif kind == "numeric" and pd.api.types.is_numeric_dtype(df[column.name]):
                roles["numeric"].append(column.name)
            elif kind in ("categorical", "boolean"):
                roles["categorical"].append(column.name)
            elif kind == "datetime" and pd.api.types.is_datetime64_any_dtype(df[column.name]):
                roles["datetime"].append(column.name)
            elif kind == "text":
                roles["text"].append(column.name)
        definition = DataDefinition(
            id_column=id_column,
            numerical_columns=roles["numeric"],
            categorical_columns=roles["categorical"],
            datetime_columns=roles["datetime"],
            text_columns=roles["text"],
        )
        data = Dataset.from_pandas(df, data_definition=definition)
    snapshot = Report([DataSummaryPreset()]).run(current_data=data)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(target))
    return target


SUMMARY_NAMED_LEFT_OUT = 30  # columns named on the page; the rest are counted


@dataclass(frozen=True)
class DataSummary:
    """What Evidently's data summary covered, and what it left out (and why)."""

    path: Path
    columns: int  # in the dataset
    rows: int
    columns_summarised: int = 0
    rows_summarised: int = 0
    columns_left_out: tuple[str, ...] = ()
    seconds: float = 0.0
    problem: str = ""  # why there is no summary (then the page says it)

    @property
    def complete(self) -> bool:
        return not self.problem and not self.columns_left_out and self.rows_summarised == self.rows


def _summary_columns(names: list[str], keep_first: list[str], limit: int) -> list[str]:
    first = [n for n in keep_first if n in names]
    rest = [n for n in names if n not in first]
    return (first + rest)[:limit]


def _bounds_notice(outcome: DataSummary, limits: QualitySpec) -> str:
    parts = []
    if outcome.rows_summarised < outcome.rows:
        parts.append(f"a uniform sample of {outcome.rows_summarised:,} of {outcome.rows:,} rows "
                     f"(quality.summary_max_rows)")
    if outcome.columns_left_out:
        named = ", ".join(outcome.columns_left_out[:SUMMARY_NAMED_LEFT_OUT])
        more = len(outcome.columns_left_out) - SUMMARY_NAMED_LEFT_OUT
        parts.append(f"{outcome.columns_summarised} of {outcome.columns} columns "
                     f"(quality.summary_max_columns = {limits.summary_max_columns}); left out: "
                     f"{named}" + (f" and {more} more" if more > 0 else ""))
    return "This summary covers " + "; ".join(parts) + "." if parts else ""


def _summary_page(title: str, text: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data summary</title>"
            f"</head><body><h1>{_e(title)}</h1><p>{_e(text)}</p></body></html>")


def _run_summary_child(data: Path, schema_path: str | Path | None, html_out: Path,
                       limit_secs: float) -> str:
    """Evidently in a child process that is killed after ``limit_secs``: a thread cannot
    be stopped, and a wide table can keep Evidently busy for many minutes. Returns ''
    when the page was written, else why not.

    The child is started as an engine's child is (``lifeline.start_child``): a session of
    its own, killed whole here, stopping when this process is gone. It is forked only from
    a local task the warm worker forked that runs no library's thread pool yet (or with
    ``AUTOKFP_ENGINE_FORK=1``), else a new interpreter: a child forked from a process whose
    TensorFlow or OpenMP thread pools had run can hang (it hung in CI for an engine's child),
    and this step can run in such a process (a notebook, a test worker, after reading
    Parquet with Arrow's pool); ``AUTOKFP_ENGINE_FORK=0`` never forks it."""
    import os
    import subprocess

    from autokfp.lifeline import start_child

    err_path = html_out.with_name(html_out.name + ".stderr")
    with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out, \
            open(err_path, "wb") as err_file:
        child = start_child("autokfp.quality:_summary_child_main",
                            [str(data), str(schema_path or ""), str(html_out), str(os.getpid())],
                            stdin=null_in.fileno(), stdout=null_out.fileno(),
                            stderr=err_file.fileno())
    try:
        code = child.wait(timeout=limit_secs)
    except subprocess.TimeoutExpired:
        _kill_child_group(child)
        return (f"Evidently did not finish within {limit_secs:g} s "
                "(quality.summary_time_limit_secs) and was stopped")
    except BaseException:  # interrupted: the child must not run on
        _kill_child_group(child)
        raise
    if code != 0 or not html_out.exists():
        err = err_path.read_bytes()[-65536:]
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        return "Evidently could not summarise this dataset: " + (
            lines[-1] if lines else f"exit status {code}")
    return ""


def _kill_child_group(child: Any) -> None:
    import contextlib
    import os
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _summary_child_main(argv: list[str]) -> None:
    """The child of ``_run_summary_child``: stops when the step that started it is gone."""
    from autokfp.lifeline import watch_parent

    data, schema_path, html_out, parent = argv
    watch_parent(int(parent))
    frame = pd.read_parquet(data)
    schema = (DatasetSchema.from_json(Path(schema_path).read_text(encoding="utf-8"))
              if schema_path else None)
    evidently_summary_html(frame, html_out, schema)


def write_data_summary(dataset_path: str | Path, schema_path: str | Path | None,
                       html_path: str | Path, limits: QualitySpec | None = None,
                       keep_first: list[str] | None = None) -> DataSummary:
    """The Evidently data summary of a Parquet dataset as HTML, whatever happens.

    Bounded by ``limits`` (``quality.summary_max_columns``, ``summary_max_rows``,
    ``summary_time_limit_secs``): columns ``keep_first`` (the target) then file order, a
    fixed-seed row sample, and Evidently stopped when it overruns. The page (and the
    returned ``DataSummary``) says what was left out. If Evidently cannot summarise the
    data, the page says why instead (a profile report must never be the reason a pipeline
    step fails, nor hold it up; the quality gate decides that).
    """
    import tempfile
    import time

    import pyarrow.parquet as pq

    from autokfp.catalog.batches import sample_rows

    limits = limits or QualitySpec()
    target = Path(html_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcome = DataSummary(path=target, columns=0, rows=0)
    try:
        meta = pq.read_metadata(dataset_path)
        names = [str(n) for n in meta.schema.to_arrow_schema().names]
        outcome = DataSummary(path=target, columns=len(names), rows=meta.num_rows)
        chosen = _summary_columns(names, keep_first or [], limits.summary_max_columns)
        # read in Arrow batches: only the sample is ever in memory
        frame = sample_rows(dataset_path, chosen, limits.summary_max_rows, seed=0)
        outcome = DataSummary(
            path=target, columns=len(names), rows=meta.num_rows,
            columns_summarised=len(chosen), rows_summarised=len(frame),
            columns_left_out=tuple(n for n in names if n not in set(chosen)))
        with tempfile.TemporaryDirectory(prefix="autokfp-summary-") as tmp:
            data = Path(tmp) / "data.parquet"
            frame.to_parquet(data, index=False)
            del frame
            page = Path(tmp) / "summary.html"
            problem = _run_summary_child(data, schema_path, page,
                                         limits.summary_time_limit_secs)
            if not problem:
                notice = _bounds_notice(outcome, limits)
                text = page.read_text(encoding="utf-8")
                if notice:
                    banner = ("<div style='padding:.75rem 1rem;margin:.5rem;background:#fff8c5;"
                              "font-family:system-ui,sans-serif;border-radius:6px'>"
                              f"{_e(notice)}</div>")
                    text = text.replace("<body>", "<body>" + banner, 1)
                target.write_text(text, encoding="utf-8")
    except Exception as exc:  # noqa: BLE001 - see the docstring
        problem = f"Evidently could not summarise this dataset: {type(exc).__name__}: {exc}"
    seconds = round(time.monotonic() - started, 2)
    if problem:
        notice = _bounds_notice(outcome, limits)
        log.warning("the Evidently data summary was not built: %s", problem)
        target.write_text(_summary_page("Data summary unavailable",
                                        problem + (". " + notice if notice else "")),
                          encoding="utf-8")
    elif not outcome.complete:
        log.warning("the Evidently data summary is partial: %s", _bounds_notice(outcome, limits))
    return DataSummary(path=target, columns=outcome.columns, rows=outcome.rows,
                       columns_summarised=0 if problem else outcome.columns_summarised,
                       rows_summarised=0 if problem else outcome.rows_summarised,
                       columns_left_out=outcome.columns_left_out, seconds=seconds,
                       problem=problem)


# --------------------------------------------------------------------------- HTML

_COLOURS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
_BACKGROUNDS = {"pass": "#dafbe1", "warn": "#fff8c5", "fail": "#ffebe9"}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .status{font-weight:600;text-transform:uppercase}
.banner{padding:.75rem 1rem;border-radius:6px;font-weight:600;margin:1rem 0}
.tag{display:inline-block;background:#ddf4ff;border-radius:10px;padding:0 .5rem;margin:1px}
.tag.pii{background:#ffebe9} .tag.sensitive{background:#fbefff}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _render_html(report: QualityReport) -> str:
    verdict = "fail" if not report.passed else ("warn" if report.warnings else "pass")
    counts = report.to_dict()["counts"]
    banner = (
        f"{'FAILED' if verdict == 'fail' else 'PASSED'}: {counts['pass']} passed, "
        f"{counts['warn']} warning(s), {counts['fail']} failed"
    )
    rows = "".join(
        f"<tr style='background:{_BACKGROUNDS[c.status]}'>"
        f"<td class='status' style='color:{_COLOURS[c.status]}'>{_e(c.status)}</td>"
        f"<td>{_e(c.name)}</td><td>{_e(c.message)}</td></tr>"
        for c in report.checks
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Data quality: {_e(report.dataset_id)}</title><style>{_STYLE}</style></head>",
        f"<body><h1>Data quality: {_e(report.dataset_id)}</h1>",
        f"<p>{report.rows} rows x {report.columns} columns</p>",
        f"<div class='banner' style='background:{_BACKGROUNDS[verdict]};"
        f"color:{_COLOURS[verdict]}'>{_e(banner)}</div>",
        "<h2>Checks</h2><table><thead><tr><th>Status</th><th>Check</th><th>Message</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>",
    ]
    if report.schema is not None:
        schema = report.schema
        column_rows = []
        for c in schema.columns:
            tags = "".join(
                f"<span class='tag {_e(t.split(':')[0])}'>{_e(t)}</span>" for t in c.tags
            )
            top = ", ".join(f"{_e(v)} ({n})" for v, n in c.top_values)
            column_rows.append(
                f"<tr><td>{_e(c.name)}</td><td>{_e(c.physical_type)}</td>"
                f"<td>{_e(c.semantic_type)}</td><td>{c.null_count}</td>"
                f"<td>{c.distinct_count}</td><td>{_number(c.min)}</td><td>{_number(c.max)}</td>"
                f"<td>{_number(c.mean)}</td><td>{top}</td><td>{tags}</td></tr>"
            )
        parts.append(
            f"<h2>Columns</h2><p>Profiled on {schema.sample_rows} of {schema.row_count} rows "
            f"({_e(schema.platform)}: {_e(schema.location)}); schema fingerprint "
            f"<code>{_e(schema.fingerprint)}</code>.</p>"
            "<table><thead><tr><th>Column</th><th>Physical</th><th>Semantic</th><th>Nulls</th>"
            "<th>Distinct</th><th>Min</th><th>Max</th><th>Mean</th><th>Top values</th>"
            f"<th>Tags</th></tr></thead><tbody>{''.join(column_rows)}</tbody></table>"
        )
    parts.append("</body></html>")
    return "".join(parts)
