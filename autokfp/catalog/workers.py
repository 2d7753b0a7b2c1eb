"""Worker processes that read and profile a crawl's datasets (``catalog.workers``).

A first crawl is one process busy on the CPU: reading each input's sample and profiling its
columns is about half of it, and that work is independent from one dataset to the next. A
``ReadPool`` hands it to worker processes forked from the crawl, while the crawl's own
process keeps what must stay in one place and in order (the crawl cache, schema versions,
the ledger, the metadata file, DataHub Lite). Datasets come back in the order the sources
listed them, so the catalog is the same, byte for byte, as with one process
(``test_catalog_snapshot.py`` runs both).

What the pool guarantees:

- **bounded memory**: at most ``WINDOW_PER_WORKER`` datasets per worker are in flight; the
  crawl takes each result as it comes (``iter_discover``), whatever the dataset count;
- **one process when workers are not worth it**: ``workers`` 1, a machine of one CPU, or the
  first ``START_AFTER`` datasets read (a small crawl, a test's) are read here, as before;
  the workers are forked at the first dataset past that, from the crawl (whose libraries
  are frozen out of the collector, so a fork shares their pages: ``crawl._libraries_frozen``);
- **a worker that dies** (killed, out of memory) stops the crawl with an error naming the
  dataset it was reading; the crawl raises before writing its index and cache, as any
  crawl that fails part-way (the next crawl redoes its work);
- **a worker that makes no progress** (a child forked from a process whose other threads
  held a lock at the fork can wait for good: see ``catalog.ingest._staged_sources``) is
  stopped after ``settings.child_stall_secs`` and the datasets it held, and every one after
  them, are read in this process instead (a warning says so): the same catalog, later;
- **no worker outlives the crawl**: they are stopped on every way out (``close``: the end,
  an error, the crawl's generator closed) and the kernel kills them if the crawl's process
  is killed (``lifeline.dies_with_parent``).

What a worker logs (a file's mixed types, a decoding fallback) is handed back with its
result and logged here, by the same loggers, so the crawl's log is what one process writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autokfp import lifeline
from autokfp.errors import DataError

log = logging.getLogger(__name__)

# datasets read in the crawl's own process before workers are forked: a crawl of a few
# datasets (most tests, a small project's discover step) never forks
START_AFTER = 32
# datasets in flight per worker (sent and not yet taken back by the crawl)
WINDOW_PER_WORKER = 8
# seconds a stopped worker gets to end on its own before it is signalled
STOP_GRACE = 2.0

_UNSET = object()


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` of v1: a pod's CPU limit)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    for path, period_path in (("/sys/fs/cgroup/cpu.max", None),
                              ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                               "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            with open(path, encoding="ascii") as handle:
                parts = handle.read().split()
            if period_path is not None:
                with open(period_path, encoding="ascii") as handle:
                    parts.append(handle.read().strip())
        except OSError:
            continue
        if len(parts) >= 2 and parts[0] not in ("max", "-1"):
            try:
                quota, period = float(parts[0]), float(parts[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                count = min(count, max(1, math.ceil(quota / period)))
        break
    return max(1, count)


def resolve_workers(setting: int | str | None) -> int:
    """The worker count of a ``catalog.workers`` setting: a number as it is, ``auto`` (or
    None) the CPUs this process may use (``available_cpus``); 1 reads in the crawl's own
    process."""
    if setting is None or setting == "auto":
        return available_cpus()
    return max(1, int(setting))


@dataclass
class Pending:
    """A dataset a worker reads: ``ReadPool.resolve`` gives its ``DiscoveredDataset``."""

    label: str  # the dataset id, for errors
    unit: tuple[Callable[..., Any], tuple[Any, ...]]  # what the worker runs
    finish: Callable[..., Any]  # its result -> the DiscoveredDataset (in this process)
    worker: _Worker | None = None
    result: Any = field(default=_UNSET, repr=False)


class _Worker:
    def __init__(self, process: Any, connection: Any, stacks: str) -> None:
        self.process, self.connection, self.stacks = process, connection, stacks
        self.queue: deque[Pending] = deque()  # sent, in order; its results come in this order


class ReadPool:
    """Worker processes for a crawl's reads (see the module's doc); a context manager.

    ``offload(here, unit, finish, label)``: ``here()`` and ``unit`` compute the same thing,
    the first in this process (what the crawl always did), the second as
    ``function(*args)`` in a worker (picklable, and needing nothing of this process's open
    connections or files); ``finish(*result)`` makes the dataset of it, here. Returns the
    dataset, or a ``Pending`` to ``resolve`` in order.
    """

    def __init__(self, workers: int, start_after: int | None = None,
                 preload: Callable[[], None] | None = None) -> None:
        self.count = max(1, workers)
        # imports what the units will need, called before the fork (so each worker does
        # not import it again: SQLAlchemy and a dialect are ~0.35 CPU-s a process)
        self.preload = preload
        self.start_after = START_AFTER if start_after is None else start_after
        self.window = WINDOW_PER_WORKER * self.count
        self.seen = 0
        self.fallen_back: str | None = None  # why the workers were stopped (read here since)
        self._workers: list[_Worker] = []
        self._scratch: str | None = None
        self.started = False

    @property
    def parallel(self) -> bool:
        return self.count > 1 and self.fallen_back is None

    def __enter__(self) -> ReadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the crawl's side

    def offload(self, here: Callable[[], tuple[Any, ...]],
                unit: tuple[Callable[..., Any], tuple[Any, ...]],
                finish: Callable[..., Any], label: str) -> Any:
        self.seen += 1
        if not self.parallel or self.seen <= self.start_after:
            return finish(*here())
        if not self.started:
            self._start()
        if not self.parallel:  # the workers could not be started
            return finish(*here())
        pending = Pending(label, unit, finish)
        worker = min(self._workers, key=lambda w: len(w.queue))
        try:
            worker.connection.send(unit)
        except (OSError, ValueError):
            # its end is closed: it died. Not said here: the dataset it died on is the oldest
            # of its queue whose result is not in the pipe, so the results it did send are
            # taken first and resolve names that dataset (this one only if it was the first)
            pass
        pending.worker = worker
        worker.queue.append(pending)
        return pending

    def done(self, pending: Pending) -> bool:
        """Whether ``resolve(pending)`` would not wait (``pending`` the oldest in flight)."""
        if pending.result is not _UNSET or pending.worker is None:
            return True
        try:
            return bool(pending.worker.connection.poll())
        except (OSError, EOFError):
            return True  # resolve says what happened

    def resolve(self, pending: Pending) -> Any:
        """The dataset of ``pending``, the oldest dataset in flight (so the next result of its
        worker); waits for it."""
        if pending.result is _UNSET:
            if pending.worker is None:  # the workers were stopped before it was sent
                pending.result = pending.unit[0](*pending.unit[1])
            else:
                self._receive(pending)
        return pending.finish(*pending.result)

    def close(self) -> None:
        """Stop the workers (asked first, then signalled), and close what this process
        opened for ``unit``s it ran itself."""
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.connection.send(None)
            except (OSError, ValueError):
                pass
            # closed at once: a worker still sending a result nobody takes (the crawl left
            # early) gets an error and ends, rather than waiting for the signal below
            worker.connection.close()
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        lifeline.stop_processes([w.process for w in workers], grace=STOP_GRACE)
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        close_resources()

    # ------------------------------------------------------------------ internals

    def _start(self) -> None:
        import multiprocessing

        from autokfp.catalog.sources.files import CRAWL_SCRATCH
        from autokfp.storage import scratch

        self.started = True
        if self.preload is not None:
            try:
                self.preload()
            except Exception as exc:  # noqa: BLE001 - a worker imports it then, or says why
                log.debug("preloading the crawl workers' modules: %s", exc)
        fork = multiprocessing.get_context("fork")
        dies = lifeline.dies_with_parent()  # made here: it names this process as the parent
        # the workers' stack files, in a crawl's scratch folder (a killed crawl's is removed
        # by the next crawl, as its ledger's)
        scratch.remove_stale(CRAWL_SCRATCH)
        self._scratch = scratch.scratch_folder(CRAWL_SCRATCH)
        try:
            for index in range(self.count):
                mine, theirs = fork.Pipe(duplex=True)
                stacks = os.path.join(self._scratch, f"worker-{index}.stacks")
                # the crawl's ends the child inherits (its own pipe's, the earlier workers'):
                # closed there, so closing them here ends a worker blocked sending (close)
                ours = [mine, *(w.connection for w in self._workers)]
                process = fork.Process(target=_serve, args=(theirs, dies, stacks, ours),
                                       name=f"autokfp-crawl-worker-{index}", daemon=True)
                process.start()
                theirs.close()
                self._workers.append(_Worker(process, mine, stacks))
        except OSError as exc:  # no fork (limits): read here, as with one process
            self.fallen_back = f"workers could not be started ({exc})"
            log.warning("discovery reads in one process: %s", self.fallen_back)
            self.close()
            return
        log.debug("discovery: %d worker processes read and profile datasets", self.count)

    def _receive(self, pending: Pending) -> None:
        from multiprocessing.connection import wait

        from autokfp.settings import child_stall_secs

        worker = pending.worker
        assert worker is not None and worker.queue and worker.queue[0] is pending
        stall = lifeline.Stall(worker.process.pid, child_stall_secs())
        while True:
            try:
                if worker.connection.poll() or wait([worker.connection,
                                                     worker.process.sentinel], 0.25):
                    if worker.connection.poll():
                        message = worker.connection.recv()
                        break
                    raise self._died(worker, pending, None)
            except (EOFError, OSError) as exc:
                raise self._died(worker, pending, exc) from None
            if stall.stalled():
                self._stalled(worker, pending, stall.seconds)
                return
        worker.queue.popleft()
        status, value, records = message
        for record in records:
            logging.getLogger(record.name).handle(record)
        if status != "ok":
            self.close()
            raise DataError(
                f"the discovery worker reading dataset '{pending.label}' failed, so the crawl "
                "stopped and the catalog was left as it was:\n" + str(value) + "\nSet "
                "catalog.workers: 1 to read every dataset in the crawl's own process")
        pending.result = value

    def _died(self, worker: _Worker, pending: Pending, exc: BaseException | None) -> DataError:
        worker.process.join(1.0)
        code = worker.process.exitcode
        how = ("is still running" if code is None else
               f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else
               f"exited with status {code}")
        self.close()
        return DataError(
            f"the discovery worker (pid {worker.process.pid}) reading dataset "
            f"'{pending.label}' ended before handing it back (it {how}"
            + (f"; {type(exc).__name__}" if exc is not None else "") + "), so the crawl "
            "stopped and wrote neither its index nor its cache (the next crawl redoes its "
            "work). If the dataset is too large for the machine's memory, lower the sample "
            "or set catalog.workers: 1 to read in the crawl's own process")

    def _stalled(self, worker: _Worker, pending: Pending, seconds: float) -> None:
        """``worker`` made no progress for ``seconds``: its threads' stacks to the log, every
        worker stopped, and what they held read in this process (``resolve``)."""
        stacks = lifeline.stacks_of(worker.process.pid, worker.stacks).strip()
        self.fallen_back = (
            f"the discovery worker (pid {worker.process.pid}) reading dataset "
            f"'{pending.label}' made no progress for {seconds:g} s (no output, under "
            f"{lifeline.STALL_CPU_SECS:g} CPU-s; {lifeline.STALL_ENV} sets the bound)")
        log.warning("%s: the workers were stopped and the crawl reads the rest in its own "
                    "process (the same catalog, later). Its threads:\n%s", self.fallen_back,
                    stacks or "(its stacks could not be read)")
        for other in self._workers:
            for held in other.queue:
                held.worker = None  # ``resolve`` runs its unit here
            other.queue.clear()
        lifeline.stop_processes([w.process for w in self._workers], grace=0.0)
        self.close()
        pending.result = pending.unit[0](*pending.unit[1])


# --------------------------------------------------------------------------- the worker

# what a process opened for the units it ran (a SQL source's connection), by key
_RESOURCES: dict[Any, tuple[Any, Callable[[], None]]] = {}


def resource(key: Any, open_: Callable[[], tuple[Any, Callable[[], None]]]) -> Any:
    """A value this process keeps for the units it runs (``open_()`` gives it and how to
    close it, the first time ``key`` is asked for), closed by ``close_resources``: a worker
    connects to a SQL source once, not per table."""
    held = _RESOURCES.get(key)
    if held is None:
        held = _RESOURCES[key] = open_()
    return held[0]


def close_resources() -> None:
    while _RESOURCES:
        _, (_, closer) = _RESOURCES.popitem()
        try:
            closer()
        except Exception as exc:  # noqa: BLE001 - closing must not fail a crawl
            log.debug("closing a crawl worker's resource: %s", exc)


class _Collected(logging.Handler):
    """What a worker's loggers emit, kept to be handed back with the unit's result."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        # a field a caller added (``extra=``) that cannot cross the pipe goes as its repr: the
        # record must not fail the unit's result, which one process would have logged fine
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_FIELDS:
                try:
                    pickle.dumps(value)
                except Exception:  # noqa: BLE001 - anything pickle refuses
                    setattr(record, key, repr(value))
        self.records.append(record)


# the attributes every LogRecord has (``logging.makeLogRecord({})``), pickled as they are
_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _serve(connection: Any, dies: Callable[[], None], stacks: str,
           inherited: Sequence[Any] = ()) -> None:
    """A worker: run each unit the crawl sends and send back ``(status, result, records)``,
    until told to stop (None) or the crawl's end of the pipe closes. ``inherited``: the
    crawl's ends of the pipes this process got by the fork, closed at once (while one is
    open here, a worker blocked sending a result the crawl no longer takes waits for the
    signal after ``STOP_GRACE``, as every worker did before session 19)."""
    for end in inherited:
        with contextlib.suppress(OSError):
            end.close()
    dies()
    # a session of its own, as every child autokfp forks (``lifeline.forked_child``): a
    # terminal's Ctrl-C goes to the crawl, which stops its workers (SIGINT is ignored here
    # too, for a crawl that shares its session with another process)
    with contextlib.suppress(OSError):
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lifeline.dump_stacks_on_signal(stacks)
    collected = _Collected()
    manager = logging.Logger.manager
    for logger in [logging.getLogger(), *manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers = []
    logging.getLogger().addHandler(collected)
    try:
        while True:
            try:
                unit = connection.recv()
            except (EOFError, OSError):
                return
            if unit is None:
                return
            function, args = unit
            try:
                message: tuple[str, Any, list[Any]] = ("ok", function(*args), collected.records)
            except BaseException:  # noqa: BLE001 - the crawl reports it, naming the dataset
                message = ("error", traceback.format_exc(), collected.records)
            try:
                connection.send(message)
            except (EOFError, OSError):
                return
            except Exception:  # noqa: BLE001 - a result that cannot be pickled
                connection.send(("error", traceback.format_exc(), []))
            collected.records = []
    finally:
        close_resources()
