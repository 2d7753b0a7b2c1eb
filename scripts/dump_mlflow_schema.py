"""Write autokfp/modeling/mlflow_schema.json: MLflow's schema for a new registry file, as
its own migrations make it (``_initialize_tables``), dumped by sqlite3 with the installed
MLflow's version. ``registry_store.create_store`` writes a new home's ``mlflow.db`` from it
when that version is the one installed (no MLflow import, no migrations), and runs MLflow's
migrations otherwise. Run it again after MLflow is upgraded (make lock):

    python scripts/dump_mlflow_schema.py
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "autokfp" / "modeling" / "mlflow_schema.json"


def main() -> int:
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mlflow.db"
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        connection = sqlite3.connect(path)
        try:
            statements = list(connection.iterdump())
        finally:
            connection.close()
    OUT.write_text(json.dumps({"mlflow": version("mlflow"), "statements": statements},
                              indent=0) + "\n")
    print(f"{OUT}: {len(statements)} statements for MLflow {version('mlflow')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
