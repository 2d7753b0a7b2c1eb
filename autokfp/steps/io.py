"""The `io` step: files in, files out, one call into the engine."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from autokfp import storage
from autokfp.config import RunConfig, parse_config
from autokfp.governance.audit import json_safe

log = logging.getLogger(__name__)


def read_config(config: dict[str, Any] | RunConfig) -> RunConfig:
    """The run config of a step; in a Kubernetes pod, first check that the registry and the
    artifact store are shared ones (every step reads its config first, so the first step of
    a misconfigured namespace stops before any work)."""
    from autokfp.settings import require_shared_state

    require_shared_state()
    return config if isinstance(config, RunConfig) else parse_config(config, origin="pipeline config")


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8",
                                     prefix=f".{path.name}.", suffix=".tmp") as handle:
        handle.write(text)
        temp = handle.name
    os.replace(temp, path)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str))


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(temp, index=False)
    os.replace(temp, path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_stored_json(path: str | Path, data: Any) -> None:
    storage.write_text(str(path), json.dumps(json_safe(data), indent=2, default=str))


def write_stored_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    from autokfp.monitoring.window import parquet_safe

    buffer = io.BytesIO()
    parquet_safe(frame).to_parquet(buffer, index=False)
    storage.write_bytes(str(path), buffer.getvalue())


def read_schema(schema_path: str | None) -> Any:
    from autokfp.catalog.schema import DatasetSchema

    if not schema_path or not Path(schema_path).exists():
        return None
    return DatasetSchema.from_json(Path(schema_path).read_text())


def read_package(model_path: str) -> tuple[Any, Any, dict[str, Any]]:
    """(AutokfpModel, plan, meta) of a packaged model folder."""
    from autokfp.modeling.model_package import load_model_package

    model = load_model_package(model_path).unwrap_python_model()
    return model, model.plan, dict(model.meta)


def record_event(kind: str, details: dict[str, Any], model: str, version: str | None = None) -> None:
    from autokfp.governance import audit

    audit.record_event(kind, details, model=model, version=version)


def record_data_changes(model: str, step: str, changes: list[str], **details: Any) -> None:
    """Every automatic change a step made to the data: a warning in the log and one audit
    event (``data.changed``), which the run summary lists."""
    if not changes:
        return
    for change in changes:
        log.warning("%s: %s", step, change)
    record_event("data.changed", {"step": step, "changes": list(changes), **details}, model)


def parquet_column_names(path: str) -> list[str]:
    """The columns of a Parquet file, from its footer (no rows read)."""
    from autokfp.monitoring.drift_stream import parquet_columns

    return parquet_columns(path)


def parquet_rows(path: str) -> int:
    """The row count of a Parquet file, from its footer."""
    from autokfp.monitoring.drift_stream import parquet_rows as rows

    return rows(path)


def read_parquet_sample(path: str, rows: int, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """(at most ``rows`` rows drawn uniformly, read batch by batch; the file's row count).

    A file with at most ``rows`` rows comes back whole, in its order.
    """
    from autokfp.monitoring.drift_stream import parquet_columns, parquet_rows, sample_rows

    return sample_rows(path, parquet_columns(path), rows, seed=seed), parquet_rows(path)
