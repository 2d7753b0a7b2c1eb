"""Run a real step (``register_model`` by default) in this process and ``kill -9`` it at its N-th write
of stored state: ``python -m tests.faults.killed_step SPEC.json``.

A write is anything that changes what outlives a run, under the folders ``roots`` names
(the AUTOKFP_HOME: registry database, artifact store, audit trail, catalog; and the step's
output): a file opened for writing, a rename (the last move of an atomic write), a copy, a
removal (Python's audit events), with ``count_signals`` a signal to another process
(stopping a server), and each write call of MLflow's SQL stores (the registry's own writes happen in SQLite, below
the audit events). The process kills itself with
SIGKILL just before write ``kill_at`` (0: never; or ``kill_on``: [kind, text, n], the n-th
write of that kind whose target holds the text), so no ``finally`` or ``atexit`` runs, as
when the kubelet or the OOM killer ends a pod. Every write point is listed in the file
``events`` (one line each: number, kind, target), so a run with ``kill_at`` 0 counts them.

SPEC.json: kill_at, roots, events, and the step's arguments (config, model_path,
evaluation_path, schema_path, registration_path); or ``call`` ("module:function") and
``kwargs`` for another step; ``count_calls`` ("module:Class.method", ...) adds calls as
write points. Inserts of pandas' ``to_sql`` are write points too, before and after the
rows go in (inside the transaction).
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
        # or the n-th write of one kind whose target holds a text: [kind, text, n]
        self.kill_on = spec.get("kill_on")
        # signals to other processes count only when asked: libraries send some of their own
        # (MLflow, while registering), at moments that differ from run to run
        self.count_signals = bool(spec.get("count_signals"))
        self.matched = 0
        self.roots = [os.path.realpath(r) for r in spec["roots"]]
        self.count = 0
        # opened before the hook: writing this list must not be a write point itself
        self.log = os.open(spec["events"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                           0o644)

    def point(self, kind: str, target: str) -> None:
        self.count += 1
        os.write(self.log, f"{self.count}\t{kind}\t{target}\n".encode())
        if self.kill_on and kind == self.kill_on[0] and self.kill_on[1] in target:
            self.matched += 1
            if self.matched == int(self.kill_on[2]):
                os.kill(os.getpid(), signal.SIGKILL)
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
        elif event == "os.kill" and self.count_signals and args[0] != os.getpid() and args[1] != 0:
            self.point(event, str(args[0]))  # stopping a server the step started

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


    def wrap_calls(self, names: list[str]) -> None:
        """Each call of ``module:Class.method`` is a write point (writes made in C, such as
        DataHub Lite's SQLite rows, that no audit event shows)."""
        import importlib

        for name in names:
            module, qualified = name.split(":")
            owner_path, attribute = qualified.rsplit(".", 1)
            owner: Any = importlib.import_module(module)
            for part in owner_path.split("."):
                owner = getattr(owner, part)
            method = getattr(owner, attribute)

            def counted(*args: Any, _method: Any = method, _kind: str = f"call.{qualified}",
                        **kwargs: Any) -> Any:
                self.point(_kind, "")
                return _method(*args, **kwargs)

            setattr(owner, attribute, counted)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    points = WritePoints(spec)
    points.wrap_stores()
    points.wrap_sql_inserts()
    points.wrap_calls(spec.get("count_calls", []))
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
