"""Fixtures of the catalog tests: an isolated AUTOKFP_HOME, sources, the real datahub CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

DATAHUB_BIN = Path(sys.executable).with_name("datahub")


@pytest.fixture
def catalog_home(autokfp_home, monkeypatch):
    """A fresh AUTOKFP_HOME with no DataHub GMS configured."""
    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    monkeypatch.delenv("DATAHUB_GMS_TOKEN", raising=False)
    return autokfp_home


def run_datahub(args: list[str], home: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """The real ``datahub`` CLI with HOME pointed at ``home`` and telemetry off."""
    env = {**os.environ, "HOME": str(home), "DATAHUB_TELEMETRY_ENABLED": "false"}
    env.pop("DATAHUB_GMS_URL", None)
    env.pop("DATAHUB_GMS_TOKEN", None)
    return subprocess.run([str(DATAHUB_BIN), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def check_metadata_file(path: str | Path, home: Path) -> str:
    """Run ``datahub check metadata-file`` and return its output (assert it passed)."""
    result = run_datahub(["check", "metadata-file", str(path)], home)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "all valid" in output, output
    return output


def write_table(db: Path, name: str, frame: pd.DataFrame) -> None:
    with sqlite3.connect(db) as connection:
        frame.to_sql(name, connection, index=False, if_exists="replace")


@pytest.fixture
def churn_sources(tmp_path, churn_frame):
    """A folder (CSV, Parquet, JSON lines) and a SQLite warehouse of churn data, and a config."""
    from autokfp.config import parse_config

    folder = tmp_path / "files"
    (folder / "nested").mkdir(parents=True)
    frame = churn_frame.head(400)
    frame.to_csv(folder / "customers.csv", index=False)
    frame.to_parquet(folder / "nested" / "customers.parquet", index=False)
    db = tmp_path / "warehouse.db"
    write_table(db, "customers", frame.assign(signup_date=frame["signup_date"].astype(str)))
    config = parse_config({
        "name": "churn-cat",
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)},
                    {"name": "warehouse", "kind": "sql", "url": f"sqlite:///{db}"}],
        "training": {"dataset": "warehouse/customers", "target": "churned",
                     "id_column": "customer_id"},
        "quality": {"min_rows": 100},
    })
    return config, folder, db, frame
