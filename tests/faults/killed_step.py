"""Run a real step (``register_model`` by default) in this process and ``kill -9`` it at its N-th write
of stored state: ``python -m tests.faults.killed_step SPEC.json``.

A write is anything that changes what outlives a run, under the folders ``roots`` names
(the AUTOKFP_HOME: registry database, artifact store, audit trail, catalog; and the step's
output): a file opened for writing, a rename (the last move of an atomic write), a copy, a
removal (Python's audit events), and each write call of MLflow's SQL stores (the registry's
own writes happen in SQLite, below the audit events). The process kills itself with
SIGKILL just before write ``kill_at`` (0: never), so no ``finally`` or ``atexit`` runs, as
when the kubelet or the OOM killer ends a pod. Every write point is listed in the file
``events`` (one line each: number, kind, target), so a run with ``kill_at`` 0 counts them.

SPEC.json: kill_at, roots, events, and the step's arguments (config, model_path,
evaluation_path, schema_path, registration_path); or ``call`` ("module:function") and
``kwargs`` for another step. Inserts of pandas' ``to_sql`` are write points too, before
and after the rows go in (inside the transaction).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
STORE_WRITES = ("create_", "set_", "delete_", "log_", "update_", "rename_", "record_")


class WritePoints:
    def __init__(self, spec: dict[str, Any]):
        self.kill_at = int(spec["kill_at"])
        self.roots = [os.path.realpath(r) for r in spec["roots"]]
        self.count = 0
        # opened before the hook: writing this list must not be a write point itself
        self.log = os.open(spec["events"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                           0o644)

    def point(self, kind: str, target: str) -> None:
        self.count += 1
        os.write(self.log, f"{self.count}\t{kind}\t{target}\n".encode())
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def stored(self, path: Any) -> str | None:
        if isinstance(path, int):
            return None
        try:
            full = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        inside = any(full == r or full.startswith(r + os.sep) for r in self.roots)
        return full if inside else None

    def audit(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            target = self.stored(path) if writing else None
            if target:
                self.point("open-for-write", target)
        elif event in ("os.rename", "shutil.copyfile", "shutil.move"):
            target = self.stored(args[1])
            if target:
                self.point(event, target)
        elif event in ("os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            target = self.stored(args[0])
            if target:
                self.point(event, target)

    def wrap_stores(self) -> None:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

        for store in (Tracking, Registry):
            for name in list(vars(store)):
                method = vars(store)[name]
                if name.startswith(STORE_WRITES) and callable(method):
                    setattr(store, name, self._counted(store.__name__, name, method))

    def _counted(self, store: str, name: str, method: Any) -> Any:
        kind = f"{'registry' if 'model_registry' in method.__module__ else 'tracking'}.{name}"

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.point(kind, "")
            return method(*args, **kwargs)

        return counted


    def wrap_sql_inserts(self) -> None:
        """Inside a SQL transaction: before pandas inserts a frame's rows, and after (rows
        inserted, not yet committed)."""
        from pandas.io.sql import SQLTable

        insert = SQLTable.insert

        def counted(table: Any, *args: Any, **kwargs: Any) -> Any:
            self.point("sql.insert", str(table.name))
            done = insert(table, *args, **kwargs)
            self.point("sql.inserted-uncommitted", str(table.name))
            return done

        SQLTable.insert = counted  # type: ignore[method-assign]


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    points = WritePoints(spec)
    points.wrap_stores()
    points.wrap_sql_inserts()
    sys.addaudithook(points.audit)
    if "call" in spec:  # another step: "module:function" called with "kwargs"
        import importlib

        module, function = spec["call"].split(":")
        getattr(importlib.import_module(module), function)(**spec["kwargs"])
    else:
        from autokfp.steps.register_model import register_model

        register_model(spec["config"], spec["model_path"], spec["evaluation_path"],
                       spec["schema_path"], spec["registration_path"])
    os.write(points.log, b"done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
