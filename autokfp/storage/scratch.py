"""Scratch folders a long piece of work keeps in the temporary directory while it runs (a
crawl's ledger, the objects it downloads ahead), and the removal of those a killed process
left behind.

A folder removes itself when its work ends normally; a process killed with ``kill -9``
cannot, so each folder carries an ``owner.json`` naming its host, process id and that
process's start time. ``remove_stale`` deletes a folder of the given prefix only when it
is provably autokfp's and orphaned: it belongs to this user and this host, its owner file
is complete, and no process with that id and start time is running. A folder without an
owner file (being created, or from an older autokfp) is never touched, nor is one whose
owner cannot be checked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"


def _started(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
            "started": _started(pid)}


def scratch_folder(prefix: str) -> str:
    """A new folder ``<temp dir>/<prefix>XXXXXXXX`` with its owner file written (atomically,
    so ``remove_stale`` never reads half of it). The caller removes the folder."""
    folder = tempfile.mkdtemp(prefix=prefix)
    temp = os.path.join(folder, f".{OWNER_FILE}.tmp")
    with open(temp, "w", encoding="utf-8") as out:
        json.dump(_owner(), out)
    os.replace(temp, os.path.join(folder, OWNER_FILE))
    return folder


def _orphaned(owner: dict[str, Any]) -> bool:
    """True only when the owner's process is certainly gone."""
    if owner.get("host") != socket.gethostname():
        return False  # another machine's or container's folder in a shared temp dir
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    boot = _boot_id()
    if boot is not None and owner.get("boot") not in (None, boot):
        return True  # written before the last reboot: no process of then runs now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    started = owner.get("started")
    now = _started(pid)
    # the id is in use: it is the owner unless both start times are known and differ
    return started is not None and now is not None and now != started


def remove_stale(prefix: str) -> list[str]:
    """Remove the folders ``<temp dir>/<prefix>*`` whose owner process is gone (see the
    module docstring); returns the folders removed."""
    removed: list[str] = []
    root = Path(tempfile.gettempdir())
    try:
        candidates = list(root.glob(f"{prefix}*"))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in candidates:
        try:
            if not folder.is_dir() or folder.is_symlink():
                continue
            if uid is not None and folder.stat().st_uid != uid:
                continue
            owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # no owner file (yet, or an older autokfp's): never ours to judge
        if isinstance(owner, dict) and _orphaned(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
            log.info("removed %s, left by process %s, which is gone", folder, owner["pid"])
    return removed
