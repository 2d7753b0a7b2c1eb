"""Run pipelines on this machine through kfp.local (no cluster).

This module and ``autokfp.edge.cli`` are the only engine modules that touch kfp: they are the
edge where a pipeline is handed to a runner. Tasks run as subprocesses of this
interpreter (``SubprocessRunner(use_venv=False)``), so the installed autokfp is what runs;
each is forked from a warm worker that imported the common modules once
(``autokfp.edge.taskfork``; ``AUTOKFP_LOCAL_FORK=0``: a new interpreter per task);
resource, GPU and Kubernetes settings of the compiled spec are ignored here and every step
runs on CPU. State goes under ``AUTOKFP_HOME``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autokfp.config import RunConfig
from autokfp.errors import AutokfpError
from autokfp.lifeline import RUNNER_ENV
from autokfp.settings import Settings

log = logging.getLogger(__name__)


class PipelineRunError(AutokfpError):
    """A local pipeline run failed; the message carries the failing step's own error."""


@dataclass
class LocalRun:
    pipeline: str
    seconds: float
    registration: dict[str, Any]
    run_dir: Path | None
    audit_from: int = 0  # events in the trail before the run (the run's own come after)
    started_at: str = ""  # ISO time (UTC) the run started: its warnings are the ones after it


def _trail_length(settings: Settings) -> int:
    from autokfp.governance.audit import read_events

    try:
        return len(read_events(settings))
    except AutokfpError:
        return 0


STEP_LABELS = {
    "resolve-config": "checking the run config and the data",
    "discover": "discovering and cataloguing data",
    "profile": "profiling data + quality gate",
    "engineer-features": "engineering features",
    "check-data-bias": "checking the data for bias",
    "list-engines": "listing the training engines",
    "load-training-data": "reading the training data (cached by its content)",
    "train-model": "training a candidate per engine",
    "select-model": "selecting the best candidate",
    "bias-check": "checking (and mitigating) model bias",
    "evaluate-model": "evaluating against the champion",
    "explain-model": "explaining the model",
    "refit-model": "refitting the chosen model on every row",
    "write-model-card": "writing the model card and compliance report",
    "register-model": "registering in MLflow",
    "deploy-model": "deploying: canary, verify, promote or roll back",
}


def _terminal() -> Any:
    """Where progress goes while the tasks' output is redirected to the log: a copy of the
    terminal taken now (fd 1 is redirected), or the notebook's / caller's own stream."""
    stream: Any = sys.stdout
    original = sys.__stdout__
    if original is not None and stream is original:
        try:
            original.flush()
            return os.fdopen(os.dup(original.fileno()), "w", buffering=1)
        except (OSError, ValueError, AttributeError):
            pass
    return stream


def run_log_path(settings: Settings) -> Path:
    """A new log file for one local run's task output: ``$AUTOKFP_HOME/logs/run-<time>-<pid>.log``."""
    return settings.home / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def run_training(config: RunConfig | None, settings: Settings | None = None,
                 log_path: Path | None = None,
                 on_task: Callable[[str], None] | None = None,
                 form: dict[str, Any] | None = None, verbose: bool = False) -> LocalRun:
    """Run ``autonomous-training`` for ``config`` under kfp.local; return the registration.

    ``form`` holds run-form parameters (``dataset``, ``target``, ``task``, ``model_name``,
    ``budget_seconds``, ``engines``, ``require_approval``), applied over ``config`` (which
    may then be None) by the pipeline's first task, as in the Kubeflow UI.
    Everything the tasks print (kfp.local, H2O, TensorFlow, MLflow) goes to ``log_path``
    (default: a new ``$AUTOKFP_HOME/logs/run-<time>.log``, printed at the start and the
    end); what is printed is one line per step as it starts and a summary, or, with
    ``on_task``, only the calls ``on_task(name)`` as each task starts (the CLI's progress).
    ``verbose=True`` streams the tasks' whole output instead (no log file).
    """
    import json

    settings = _local_pipeline(settings)
    audit_from = _trail_length(settings)
    started_at = datetime.now(timezone.utc).isoformat()
    started = time.monotonic()
    arguments = {**(form or {}), "config": config.to_dict() if config is not None else {}}
    terminal = None
    if verbose:
        log_path = None
    elif log_path is None:
        log_path = run_log_path(settings)
    if not verbose and on_task is None:
        terminal = _terminal()
        name = config.name if config is not None else "the run form's model"
        print(f"Running autonomous-training for {name} with kfp.local; each task's output: "
              f"{log_path}", file=terminal, flush=True)

        def on_task(task: str) -> None:
            print(f"  {time.monotonic() - started:5.0f}s {STEP_LABELS.get(task, task)}",
                  file=terminal, flush=True)
    try:
        output = _run_pipeline("autonomous-training", arguments, settings, log_path, on_task)
    except PipelineRunError:
        if terminal is not None:
            print(f"Failed after {time.monotonic() - started:.0f}s (the error below); "
                  f"full log: {log_path}", file=terminal, flush=True)
        raise
    finally:
        if terminal is not None and terminal is not sys.stdout:
            terminal.close()
    seconds = time.monotonic() - started
    registration_path = Path(output.output.path)
    registration = json.loads(registration_path.read_text())
    if not verbose and terminal is not None:
        print(f"Finished in {seconds:.0f}s: registered {registration.get('name')} "
              f"v{registration.get('version')} ({', '.join(registration.get('aliases') or [])}): "
              f"{registration.get('decision')}. Full log: {log_path}", flush=True)
    return LocalRun(pipeline="autonomous-training", seconds=seconds, registration=registration,
                    run_dir=_run_dir(registration_path, settings), audit_from=audit_from,
                    started_at=started_at)


@dataclass
class MonitoringRun:
    """One local run of ``drift-monitoring``: its decision (and what the retraining did)."""

    seconds: float
    decision: dict[str, Any]
    retraining: dict[str, Any] | None
    run_dir: Path | None


def run_monitoring(config: RunConfig, settings: Settings | None = None, window_end: str = "",
                   log_path: Path | None = None,
                   on_task: Callable[[str], None] | None = None) -> MonitoringRun:
    """Run ``drift-monitoring`` for ``config`` under kfp.local; return its decision.

    The same pipeline a Kubeflow recurring run executes: when a trigger fires, the nested
    training graph registers, deploys, verifies and promotes or rolls back a new model in
    this run. ``window_end`` (ISO 8601) pins the end of the window (default: now).
    """
    import json

    settings = _local_pipeline(settings)
    root = Path(settings.pipeline_root)
    before = {p.name for p in root.glob("drift-monitoring-*")}
    started = time.monotonic()
    _run_pipeline("drift-monitoring", {"config": config.to_dict(), "window_end": window_end}, settings,
                  log_path, on_task)
    seconds = time.monotonic() - started
    # no pipeline output can leave an ExitHandler: read the decision from this run's folder
    runs = sorted((p for p in root.glob("drift-monitoring-*") if p.name not in before),
                  key=lambda p: p.stat().st_mtime)
    run_dir = runs[-1] if runs else None
    decision: dict[str, Any] = {}
    retraining = None
    if run_dir is not None:
        found = sorted(run_dir.rglob("decide-retraining/decision"))
        if found:
            decision = json.loads(found[0].read_text())
        outcome = sorted(run_dir.rglob("record-retraining/outcome"))
        if outcome:
            retraining = json.loads(outcome[0].read_text())
    return MonitoringRun(seconds=seconds, decision=decision, retraining=retraining, run_dir=run_dir)


def run_scoring(form: dict[str, Any], config: RunConfig | None = None,
                settings: Settings | None = None, log_path: Path | None = None,
                on_task: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``batch-scoring`` under kfp.local with ``form`` (``dataset``, ``model``, ``output``,
    ``keys``, ``chunk_rows``) and ``config``; return its summary (where the predictions
    went, chunks scored and skipped, lineage URNs)."""
    import json

    settings = _local_pipeline(settings)
    arguments = {**form, "config": config.to_dict() if config is not None else {}}
    started = time.monotonic()
    output = _run_pipeline("batch-scoring", arguments, settings, log_path, on_task)
    summary = json.loads(Path(output.output.path).read_text())
    return {**summary, "pipeline_seconds": round(time.monotonic() - started, 1)}


def _local_pipeline(settings: Settings | None) -> Settings:
    """This machine's state made ready (folders, the environment tasks read) and kfp.local's
    runner set up."""
    from kfp import local

    settings = settings or Settings.from_env()
    settings.ensure_local_dirs()
    settings.export()  # tasks are subprocesses: they read the same state from the env
    os.environ[RUNNER_ENV] = str(os.getpid())  # tasks stop when this process is gone
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=settings.pipeline_root,
               raise_on_error=True)
    return settings


def _run_pipeline(name: str, arguments: dict[str, Any], settings: Settings,
                  log_path: Path | None, on_task: Callable[[str], None] | None,
                  build: Callable[[], Any] | None = None) -> Any:
    """Build the pipeline ``name`` with the local options (or call ``build`` for it) and run
    it (its output to ``log_path`` when given); a failed task raises ``PipelineRunError``
    carrying the failing step's own error."""
    from autokfp.edge.taskfork import forked_tasks, preload_for_run
    from autokfp.serving.warm_predictor import warm_predictors
    from autokfp.training.h2o_refit_cluster import refit_clusters
    from autokfp.training.mojo_service import shared_mojo_scorer

    built = False
    try:
        with contextlib.ExitStack() as stack:
            if log_path is not None:
                stack.enter_context(_captured_output(log_path, on_task))
            preload = preload_for_run(arguments, name)
            # one MOJO scorer (one JVM) for the tasks that score H2O models, started before
            # the worker so that every task's environment names it (mojo_service)
            stack.enter_context(shared_mojo_scorer("h2o" in preload))
            # named now, so that every task's environment names it (the worker forks only
            # tasks whose environment is its own); started once the engines are done. Only
            # for a run whose deploy step starts a local predictor: a manifest or kubernetes
            # target never asks it for one (its imports: ~9 CPU-s for nothing)
            warm = stack.enter_context(warm_predictors(
                log_path.with_name(log_path.stem + "-warm-predictor.log") if log_path else None
            )) if serves_locally(arguments) else None
            # the refit step's H2O cluster, named now and started once an H2O model is
            # chosen: only a training run whose config may refit one on this machine
            refit = stack.enter_context(refit_clusters(
                arguments.get("config"),
                log_path.with_name(log_path.stem + "-refit-cluster.log") if log_path else None
            )) if name == "autonomous-training" else None
            stack.enter_context(forked_tasks(preload))
            stack.enter_context(_no_task_once_stopping())  # around the worker's hook
            stack.enter_context(_after_training([warm.start] if warm is not None else [],
                                                _import_registry))
            if refit is not None:
                stack.enter_context(_after_selection({"h2o": refit.start}))
                stack.enter_context(_after_refit([refit.close]))
            # the task worker imports its modules meanwhile (it started just now)
            from autokfp.pipelines import PIPELINES

            pipeline = build() if build is not None else PIPELINES[name](_local_options())
            built = True
            return pipeline(**arguments)
    except RuntimeError as exc:  # kfp.local reports a failed task as RuntimeError
        if not built:
            raise
        raise PipelineRunError(_explain_failure(str(exc), settings, log_path)) from None


def serves_locally(arguments: dict[str, Any]) -> bool:
    """Whether a run with these pipeline arguments may start a local predictor: its config's
    ``deploy.target`` resolves to local as the deploy step resolves it (a run form's run,
    whose config is filled in by its first task, counts as ``auto``)."""
    from autokfp.config.serving import resolve_target

    config = arguments.get("config")
    deploy = config.get("deploy") if isinstance(config, dict) else None
    target = deploy.get("target") if isinstance(deploy, dict) else None
    return resolve_target(str(target or "auto")) == "local"


@contextlib.contextmanager
def _wrapping_task_starts(wrap: Callable[[Callable[..., int], list[str], dict[str, str] | None], int]
                          ) -> Iterator[None]:
    """While open, kfp.local starts each task through ``wrap(original, command, env_vars)``
    (its ``subprocess_task_handler.run_local_subprocess``, restored on exit); nothing is
    wrapped when this kfp has no such function."""
    from kfp.local import subprocess_task_handler as handler

    original = getattr(handler, "run_local_subprocess", None)
    if original is None:
        yield
        return

    def run_local_subprocess(full_command: list[str],
                             env_vars: dict[str, str] | None = None) -> int:
        return int(wrap(original, full_command, env_vars))

    handler.run_local_subprocess = run_local_subprocess
    try:
        yield
    finally:
        handler.run_local_subprocess = original


def _no_task_once_stopping() -> contextlib.AbstractContextManager[None]:
    """While open, kfp.local starts no task once the run is being stopped (Ctrl-C, SIGTERM:
    ``autokfp.edge.interrupts``): its worker threads would otherwise start the tasks still
    queued while the interrupted run unwinds."""
    from autokfp.edge.interrupts import stopping

    def wrap(original: Callable[..., int], full_command: list[str],
             env_vars: dict[str, str] | None) -> int:
        if stopping():
            return 128 + stopping()
        return original(full_command=full_command, env_vars=env_vars)

    return _wrapping_task_starts(wrap)


def _after_training(starts: list[Callable[[], None]], imports: Callable[[], None] | None = None
                    ) -> contextlib.AbstractContextManager[None]:
    """While open, each of ``starts`` and ``imports`` is called once, as the first task that
    loads model packages (``taskfork.PACKAGE_TASKS``: select-model first) starts: the engines
    are done then, so what they begin (the warm predictor's imports, the command's own)
    never runs beside a search."""
    from autokfp.edge.taskfork import PACKAGE_TASKS

    def begin() -> None:
        for start in starts:
            try:
                start()
            except OSError as exc:  # the deploy step then starts its predictor itself
                log.warning("the warm predictor process did not start: %s", exc)
        if imports is not None:
            imports()

    return _wrapping_task_starts(_once_at(PACKAGE_TASKS, begin))


def _once_at(functions: Iterable[str], action: Callable[[], None]
             ) -> Callable[..., int]:
    """A task-start wrapper (``_wrapping_task_starts``) that calls ``action`` once, as the
    first task whose function is one of ``functions`` starts, before that task. The local
    runner starts tasks one at a time, so the flag needs no lock."""
    wanted, done = frozenset(functions), False

    def wrap(original: Callable[..., int], full_command: list[str],
             env_vars: dict[str, str] | None) -> int:
        nonlocal done
        if not done and _function_of(full_command) in wanted:
            done = True
            action()
        return original(full_command=full_command, env_vars=env_vars)

    return wrap


# the package select-model chose, as a later task's executor input names it
_SELECTED = re.compile(r'"uri":\s*"([^"]+/select-model/model)"')


def _selected_engine(full_command: list[str]) -> str | None:
    """The engine of the package select-model chose, when this task's inputs name it."""
    import json

    found = _SELECTED.search(" ".join(full_command))
    if found is None:
        return None
    try:
        return str(json.loads(Path(found.group(1), "artifacts", "meta.json").read_text())
                   ["engine"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _after_selection(starts: dict[str, Callable[[], None]]
                     ) -> contextlib.AbstractContextManager[None]:
    """While open, ``starts[engine]`` is called once, as the first task that takes the
    package select-model chose (the bias check) starts, when that package's engine is
    ``engine`` (the refit step's H2O cluster: started for an H2O model only, never beside a
    search nor for an AutoKeras champion)."""
    decided = False

    def wrap(original: Callable[..., int], full_command: list[str],
             env_vars: dict[str, str] | None) -> int:
        nonlocal decided
        if not decided:
            engine = _selected_engine(full_command)
            if engine is not None:
                decided = True
                start = starts.get(engine)
                try:
                    if start is not None:
                        start()
                except OSError as exc:  # the step then starts its own
                    log.warning("a warm process for the %s model did not start: %s", engine,
                                exc)
        return original(full_command=full_command, env_vars=env_vars)

    return _wrapping_task_starts(wrap)


# the tasks that take the refit step's output (the served model): once one starts, the
# refit step is over
AFTER_REFIT = frozenset({"explain_model", "register_model", "write_model_card", "deploy_model"})


@contextlib.contextmanager
def _after_refit(stops: list[Callable[[], None]]) -> Iterator[None]:
    """While open, each of ``stops`` is called once, in a thread of its own, as the first
    task after the refit step (``AFTER_REFIT``: explain-model) starts: the refit's warm H2O
    cluster has then served the one task that takes it (the refit child takes it once), and
    its shutdown (4.7 s of the command's end at load 10, session 22) runs beside the
    explanation instead of after the deploy. Closing waits for the threads: nothing they
    stop outlives the command."""
    threads: list[threading.Thread] = []

    def stop_quietly(stop: Callable[[], None]) -> None:
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - the command's end stops it again
            log.warning("stopping a process after the refit failed: %s", exc)

    def launch() -> None:
        for stop in stops:
            thread = threading.Thread(target=stop_quietly, args=(stop,), daemon=True,
                                      name="autokfp-after-refit")
            thread.start()
            threads.append(thread)

    try:
        with _wrapping_task_starts(_once_at(AFTER_REFIT, launch)):
            yield
    finally:
        for thread in threads:
            thread.join()


# what the command imports to read the registry once the run ends (``autokfp run`` prints
# the champion: ``registry.list_models``): MLflow and its SQLite stores, 4-16 s of the
# command's end (session 14, load 8-12), imported meanwhile on the core the tasks after
# training leave free
REGISTRY_IMPORTS = ("mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
                    "mlflow.store.model_registry.sqlalchemy_store")


def _import_registry() -> None:
    """Import ``REGISTRY_IMPORTS`` in a thread of this process (a module that fails is left
    to the code that needs it, which reports it)."""
    import importlib

    def imports() -> None:
        for name in REGISTRY_IMPORTS:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=imports, name="autokfp-registry-imports", daemon=True).start()


def _function_of(full_command: list[str]) -> str:
    """The component function a kfp.local task command runs ("" when it names none)."""
    if "--function_to_execute" in full_command[:-1]:
        return full_command[full_command.index("--function_to_execute") + 1]
    return ""


def _local_options() -> Any:
    """Cluster options for a run on this machine: the engines train one after the other
    (side by side they would only take CPU and memory from each other)."""
    from autokfp.pipelines import ClusterOptions

    return ClusterOptions(training_parallelism=1, schedule_time=False)


def _run_dir(path: Path, settings: Settings) -> Path | None:
    root = Path(settings.pipeline_root).resolve()
    for parent in path.resolve().parents:
        if parent.parent == root:
            return parent
    return None


_ERROR_LINE = re.compile(r"(autokfp\.[\w.]*(?:Error)|[A-Za-z_.]*(?:Error|Exception)): (.+)$")
_TASK_START = re.compile(r"Executing task .*?'([\w-]+)'")


def _explain_failure(message: str, settings: Settings, log_path: Path | None) -> str:
    """kfp.local only says which task failed; find the task's own error in its log."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    first = message.strip().splitlines()[0] if message.strip() else "a pipeline task failed"
    if log_path is None or not log_path.exists():
        return f"{first}\nThe failing step's error is printed above. Pipeline files: {settings.pipeline_root}"
    cause = None
    lines = log_path.read_text(errors="replace").splitlines()
    for index, line in enumerate(lines):
        match = _ERROR_LINE.search(line.strip())
        if match and "Traceback" not in line:
            # an error message may continue on the following indented lines
            extra = []
            for follow in lines[index + 1:index + 30]:
                text = follow.strip()
                if not text or text.startswith(("[KFP", "Traceback")) or " - INFO - " in follow \
                        or " - ERROR - " in follow:
                    break
                extra.append(text)
            cause = (match.group(1).rsplit(".", 1)[-1], " ".join([match.group(2).strip(), *extra]))
    detail = f"{cause[0]}: {cause[1]}" if cause else "see the log"
    return f"{first}\n{detail}\nFull log: {log_path}"


@contextlib.contextmanager
def _captured_output(log_path: Path, on_task: Callable[[str], None] | None) -> Iterator[None]:
    """Send this process's (and its children's) stdout/stderr to ``log_path`` for a while."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    handle = open(log_path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    stop = threading.Event()

    def follow() -> None:
        seen: set[str] = set()
        with open(log_path, encoding="utf-8", errors="replace") as reader:
            while not stop.is_set():
                line = reader.readline()
                if not line:
                    time.sleep(0.2)
                    continue
                match = _TASK_START.search(line)
                if match and on_task and match.group(1) not in seen:
                    seen.add(match.group(1))
                    on_task(match.group(1))

    watcher = threading.Thread(target=follow, daemon=True)
    try:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        watcher.start()
        # kfp.local prints through sys.stdout, which may not be fd 1 (pytest, notebooks)
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        stop.set()
        watcher.join(timeout=2)
        handle.close()
