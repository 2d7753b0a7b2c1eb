"""``autokfp monitor`` (the drift-monitoring pipeline locally, once or on a timer) and
``autokfp schedule`` (a Kubeflow recurring run of it)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.markup import escape

from autokfp.errors import AutokfpError, ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``6h``, ``1d`` → seconds."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--every '{text}' is not a duration; use e.g. 30s, 10m, 6h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_on_timer(
    run_once: Callable[[int], Any],
    every: float | None,
    max_runs: int | None,
    on_error: Callable[[int, AutokfpError], None],
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[int, int]:
    """Call ``run_once(n)`` now and then every ``every`` seconds (start to start).

    A failed run (an AutokfpError) is reported through ``on_error`` and the timer goes on:
    the next run may well succeed. Without ``every`` it runs once. Returns (runs, failures).
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    runs = failures = 0
    while True:
        started = clock()
        runs += 1
        try:
            run_once(runs)
        except AutokfpError as error:
            failures += 1
            on_error(runs, error)
        if every is None or (max_runs is not None and runs >= max_runs):
            return runs, failures
        sleep(max(0.0, every - (clock() - started)))


def _print_decision(console: Any, run: Any, number: int) -> None:
    from rich.table import Table

    decision = run.decision
    table = Table(title=f"monitoring run {number} ({run.seconds:.0f}s)", show_header=False)
    table.add_column("what")
    table.add_column("result")
    table.add_row("champion", f"v{decision.get('champion')}" if decision.get("champion") else "-")
    table.add_row("window", f"{decision.get('rows', 0)} rows ({decision.get('status')})")
    for check in decision.get("checks", []):
        mark = (
            "[red]fired[/]"
            if check["fired"]
            else ("ok" if check["evaluated"] else "[dim]not judged[/]")
        )
        table.add_row(check["trigger"], f"{mark}: {check['detail']}")
    for blocker in decision.get("blockers", []):
        table.add_row("blocked", blocker)
    for note in decision.get("notes", []):
        table.add_row("note", note)
    for anomaly in decision.get("anomalies", []):
        table.add_row("anomaly", anomaly)
    console.print(table)
    colour = "yellow" if decision.get("retrain") else "green"
    console.print(f"[bold {colour}]{decision.get('summary', 'no decision recorded')}[/]")
    if run.retraining:
        outcome = run.retraining
        console.print(
            f"Retrained: v{outcome['registered_version']} "
            f"({'promoted' if outcome.get('promoted') else 'not promoted'}); champion now "
            f"v{outcome.get('champion')}, deployment: {outcome.get('deployment') or '-'}"
        )
    if run.run_dir:
        console.print(f"[dim]Artifacts: {run.run_dir}[/]")


def _exit_with(errors: Any, error: AutokfpError) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=error.exit_code) from None


def _monitor_once(console: Any, config: Any, settings: Any, number: int, *, every: str | None,
                  window_end: str, verbose: bool, as_json: bool) -> None:
    """One run of drift-monitoring, then its decision (a table, or JSON with --json)."""
    from autokfp.edge.local import run_monitoring

    log_path = (
        None
        if verbose
        else settings.home / "logs" / f"monitor-{time.strftime('%Y%m%d-%H%M%S')}.log"
    )
    if not as_json:
        console.print(
            f"[bold]Monitoring[/] {config.name} (run {number}"
            + (f", every {every}" if every else "")
            + ")"
        )
    quiet = verbose or as_json
    with contextlib.nullcontext() if quiet else console.status("running drift-monitoring..."):
        result = run_monitoring(config, settings, window_end=window_end, log_path=log_path)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "decision": result.decision,
                    "retraining": result.retraining,
                    "seconds": round(result.seconds, 1),
                    "run_dir": str(result.run_dir),
                },
                default=str,
            )
        )
    else:
        _print_decision(console, result, number)
        if log_path:
            console.print(f"[dim]Full log: {log_path}[/]")


def monitor_command(
    config_path: Path = typer.Argument(..., help="YAML run config", metavar="CONFIG.yaml"),
    every: str | None = typer.Option(
        None, "--every", help="run on a timer, e.g. 10m, 6h (default: once)"
    ),
    max_runs: int | None = typer.Option(None, "--max-runs", min=1, help="stop after N runs"),
    window_end: str = typer.Option(
        "", "--window-end", help="end of the window, ISO 8601 (default: now)"
    ),
    home: Path | None = typer.Option(None, "--home", help="state folder"),
    as_json: bool = typer.Option(False, "--json", help="print each decision as JSON"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every task's log"),
) -> None:
    """Run the drift-monitoring pipeline locally (kfp.local), once or every --every."""
    from rich.console import Console

    from autokfp.config import load_config
    from autokfp.settings import Settings

    console = Console()
    errors = Console(stderr=True)
    try:
        config = load_config(config_path)
        interval = parse_duration(every) if every else None
        settings = Settings.from_env(home)
        settings.ensure_local_dirs()
        settings.export()
    except AutokfpError as error:
        _exit_with(errors, error)

    def once(number: int) -> None:
        _monitor_once(console, config, settings, number, every=every, window_end=window_end,
                      verbose=verbose, as_json=as_json)

    def failed(number: int, error: AutokfpError) -> None:
        errors.print(
            f"[bold red]monitoring run {number} failed:[/] {escape(str(error))}",
            highlight=False,
            soft_wrap=True,
        )

    try:
        _runs, failures = run_on_timer(once, interval, max_runs, failed)
    except KeyboardInterrupt:
        errors.print("stopped")
        raise typer.Exit(code=130) from None
    if failures:
        raise typer.Exit(code=2)


def schedule_command(
    config_path: Path = typer.Argument(..., help="YAML run config", metavar="CONFIG.yaml"),
    host: str | None = typer.Option(
        None,
        "--host",
        envvar="KF_PIPELINES_ENDPOINT",
        help="Kubeflow Pipelines API, e.g. https://kubeflow.example.com/pipeline",
    ),
    cron: str | None = typer.Option(
        None, "--cron", help="6 fields, seconds first (default: monitoring.schedule)"
    ),
    experiment: str = typer.Option("autokfp", "--experiment", help="experiment name"),
    name: str | None = typer.Option(
        None, "--name", help="recurring run name (default: <model>-drift-monitoring)"
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", help="user namespace (multi-user Kubeflow)"
    ),
    token_env: str | None = typer.Option(
        None, "--token-env", help="environment variable holding a bearer token"
    ),
    service_account: str | None = typer.Option(
        None, "--service-account",
        help="Kubernetes service account of the runs' pods, e.g. autokfp-pipeline-runner",
    ),
    allow_local_paths: bool = typer.Option(
        False, "--allow-local-paths",
        help="send folder/SQLite paths anyway (only if they exist inside the pods)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="check CONFIG and print the recurring run it would create (no KFP host needed)"),
) -> None:
    """Create a Kubeflow recurring run of drift-monitoring (re-enters training on drift).

    Needs --host (or KF_PIPELINES_ENDPOINT), except inside a cluster's pod; --dry-run prints
    what it would create without one."""
    import os

    import yaml
    from rich.console import Console

    from autokfp.config import load_config
    from autokfp.edge.scheduling import (
        NO_HOST_HINT,
        monitoring_schedule_spec,
        schedule_monitoring,
        token_from_env,
    )

    console = Console()
    try:
        config = load_config(config_path)
        if dry_run:
            spec = monitoring_schedule_spec(
                config, cron=cron, experiment=experiment, name=name, namespace=namespace,
                service_account=service_account, allow_local_paths=allow_local_paths)
            for warning in spec["warnings"]:
                Console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}",
                                           highlight=False, soft_wrap=True)
            if as_json:
                sys.stdout.write(json.dumps(spec, indent=2, default=str) + "\n")
            else:
                sys.stdout.write("# autokfp schedule --dry-run: nothing was created. With --host "
                                 "it uploads this pipeline version (once) and creates this "
                                 "recurring run through kfp.Client.create_recurring_run:\n"
                                 + yaml.safe_dump(spec, sort_keys=False))
            return
        if not host and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise ConfigError(f"no Kubeflow Pipelines host: {NO_HOST_HINT}; or add --dry-run to "
                              "print the recurring run it would create, without a host")
        token = token_from_env(token_env)
        result = schedule_monitoring(
            config,
            host=host,
            cron=cron,
            experiment=experiment,
            name=name,
            namespace=namespace,
            token=token,
            service_account=service_account,
            allow_local_paths=allow_local_paths,
        )
    except AutokfpError as error:
        _exit_with(Console(stderr=True), error)
    for warning in result.warnings:
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}", highlight=False,
                                   soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    verb = "Created" if result.created else "Already scheduled:"
    console.print(
        f"{verb} recurring run [cyan]{result.name}[/] ({result.recurring_run_id}), cron "
        f"'{result.cron}', experiment {result.experiment_id}, pipeline version "
        f"{result.pipeline_version_id}"
    )


def register_commands(app: typer.Typer) -> None:
    """Add ``monitor`` and ``schedule``."""
    app.command("monitor")(monitor_command)
    app.command("schedule")(schedule_command)
