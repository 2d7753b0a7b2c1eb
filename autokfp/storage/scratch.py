"""Scratch folders a long piece of work keeps in the temporary directory while it runs (a
crawl's ledger, the objects it downloads ahead), and the removal of those a killed process
left behind.

A folder removes itself when its work ends normally; a process killed with ``kill -9``
cannot, so each folder carries an ``owner.json`` naming its host, the kernel's boot id, the
process's PID namespace (the inode of ``/proc/self/ns/pid``), its process id and that
process's start time (``/proc/PID/stat``). ``remove_stale`` deletes a folder of the given
prefix (and of this user) in two cases only:

- its owner is provably gone: the folder was made on this host name, in this boot, in this
  PID namespace (a process id means nothing in another: two pods sharing a volume, a
  container's PID 1), with a known start time, and no process with that id and start time
  runs now (none with the id, or one started at another time: the id reused);
- or, as the last resort for a folder whose owner cannot be judged from here (another host
  name or boot, another PID namespace, an owner file without those, from an older autokfp,
  unreadable, or none), nothing in it has changed for ``STALE_AFTER_SECS`` (7 days): work
  that runs keeps writing its scratch folder.

A folder whose owner provably runs is never removed, however old. When this process's
``/proc`` is not its own PID namespace's (``unshare --pid`` without a new ``/proc``), start
times cannot be read, so its owner files carry none and it proves no owner gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
STALE_AFTER_SECS = 7 * 24 * 3600  # an unjudgeable owner's folder idle this long is removed
GONE, RUNNING, UNKNOWN = "gone", "running", "unknown"


def _proc_is_ours() -> bool:
    """Whether ``/proc`` shows this process's PID namespace (its own id in ``/proc/self``)."""
    try:
        return int(Path("/proc/self/stat").read_text().split()[0]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


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


def _pid_namespace() -> int | None:
    """The inode of this process's PID namespace (unique among the namespaces that exist:
    one equal to a recorded one that no longer exists means the recorded one is gone, and
    every process in it)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    ours = _proc_is_ours()
    return {"host": socket.gethostname(), "boot": _boot_id(),
            "pidns": _pid_namespace() if ours else None, "pid": pid,
            "started": _started(pid) if ours else None}


def scratch_folder(prefix: str) -> str:
    """A new folder ``<temp dir>/<prefix>XXXXXXXX`` with its owner file written (atomically,
    so ``remove_stale`` never reads half of it). The caller removes the folder."""
    folder = tempfile.mkdtemp(prefix=prefix)
    temp = os.path.join(folder, f".{OWNER_FILE}.tmp")
    with open(temp, "w", encoding="utf-8") as out:
        json.dump(_owner(), out)
    os.replace(temp, os.path.join(folder, OWNER_FILE))
    return folder


def owner_state(owner: Any) -> str:
    """``GONE`` when the owner's process is provably not running, ``RUNNING`` when it
    provably is, else ``UNKNOWN`` (see the module docstring)."""
    if not isinstance(owner, dict):
        return UNKNOWN
    pid, started = owner.get("pid"), owner.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 \
            or not isinstance(started, int) or isinstance(started, bool):
        return UNKNOWN
    if owner.get("host") != socket.gethostname():
        return UNKNOWN  # another machine's or container's folder in a shared temp dir
    boot, namespace = _boot_id(), _pid_namespace()
    if boot is None or owner.get("boot") != boot:
        return UNKNOWN  # a reboot, or another machine of the same name sharing the volume
    if namespace is None or owner.get("pidns") != namespace or not _proc_is_ours():
        return UNKNOWN  # its process id names another process here, or none
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return GONE
    except PermissionError:
        pass  # another user's process has the id: its start time tells
    now = _started(pid)
    if now is None:  # it ended between the two looks, unless /proc hides it
        return GONE if not Path(f"/proc/{pid}").exists() else UNKNOWN
    return RUNNING if now == started else GONE  # another start time: the id reused


def _idle_secs(folder: Path) -> float:
    """Seconds since anything in ``folder`` (itself included) was last modified."""
    newest = folder.lstat().st_mtime
    for directory, folders, files in os.walk(folder):
        for name in folders + files:
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
            except OSError:
                continue  # removed meanwhile
    return time.time() - newest


def remove_stale(prefix: str) -> list[str]:
    """Remove the folders ``<temp dir>/<prefix>*`` whose owner process is provably gone,
    or whose owner cannot be judged and which were left idle ``STALE_AFTER_SECS`` (see the
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
        except OSError:
            continue
        try:
            owner: Any = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = None  # none (being made, or an older autokfp's), or unreadable
        state = owner_state(owner)
        if state == RUNNING:
            continue
        if state == GONE:
            reason = f"left by process {owner['pid']}, which is gone"
        else:
            try:
                idle = _idle_secs(folder)
            except OSError:
                continue
            if idle <= STALE_AFTER_SECS:
                continue
            reason = (f"its owner cannot be checked from here and nothing in it changed for "
                      f"{idle / 86400:.1f} days")
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
        log.info("removed %s, %s", folder, reason)
    return removed
