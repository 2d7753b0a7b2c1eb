"""The ``autokfp`` command line.

    autokfp demo                 generate the example data and run the training pipeline locally
    autokfp run CONFIG.yaml      run the training pipeline locally (kfp.local)
    autokfp compile --out DIR    write every pipeline as KFP YAML for the Kubeflow UI
    autokfp submit CONFIG.yaml   start one run on Kubeflow through kfp.Client
    autokfp models [--json]      registered models, versions, aliases and metrics

Errors a user can cause are printed as one message (no traceback) with exit code 2.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autokfp import __version__
from autokfp.errors import AutokfpError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="autokfp: autonomous ML on Kubeflow Pipelines (and locally with kfp.local).")
console = Console()
err_console = Console(stderr=True)

HomeOption = typer.Option(None, "--home", help="state folder (default: $AUTOKFP_HOME or ./.autokfp)")


def command_name() -> str:
    """How to call this command line again from the user's shell: ``autokfp`` when that is
    what PATH finds, else the path it was started by (``.venv/bin/autokfp`` after ``make
    demo``, whose venv is not activated), so every "run this next" line printed works as
    it is copied."""
    import shutil

    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is None or started.name != "autokfp" or not started.is_file():
        return "autokfp"  # python -m, a test runner, or an entry point of another name
    found = shutil.which("autokfp")
    if found and Path(found).resolve() == started.resolve():
        return "autokfp"
    absolute = started.absolute()
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return str(absolute)
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


def _fail(error: AutokfpError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def _settings(home: Path | None):
    from autokfp.settings import Settings

    settings = Settings.from_env(home)
    settings.ensure_local_dirs()
    settings.export()
    return settings


def _quiet_libraries() -> None:
    os.environ.setdefault("DATAHUB_TELEMETRY_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic", "h2o", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.callback()
def _main() -> None:
    _quiet_libraries()


@app.command()
def version() -> None:
    """Print the autokfp version."""
    console.print(__version__)


def preflight(config: Any) -> None:
    """Fail fast, before any step runs, on what would fail later: a missing or empty
    dataset, or a target column that is absent (the pipeline's first task checks the same,
    with the same message)."""
    from autokfp.steps.resolve_config import check_training_data

    check_training_data(config)




# the steps that write what is registered: an interrupt after one of them started is
# reported as such (each writes whole or leaves an incomplete, unused version: a rerun
# finishes or replaces it; docs/architecture.md, "A step killed half-way")
REGISTRY_STEPS = ("register-model", "deploy-model")


def interruption_line(signum: int, steps: list[str], rerun: str) -> str:
    """The one line for a run stopped by Ctrl-C or SIGTERM."""
    from autokfp.edge.interrupts import RunInterrupted
    from autokfp.edge.local import STEP_LABELS

    during = f" during '{STEP_LABELS.get(steps[-1], steps[-1])}'" if steps else ""
    touched = [step for step in REGISTRY_STEPS if step in steps]
    registry = ("nothing registered was changed or half-written" if not touched else
                f"nothing registered was half-written ({touched[-1]} had started: "
                "'autokfp models' shows what it registered)")
    return (f"interrupted by {RunInterrupted(signum).what}: the run was stopped{during} and its "
            f"processes ended; {registry}. To run it again: {rerun}")


def _interrupted(stop: Any, steps: list[str], rerun: str) -> None:
    """``interruption_line``, then exit 130 / 143."""
    err_console.print(interruption_line(stop.signum, steps, rerun), highlight=False,
                      markup=False, soft_wrap=True)
    raise typer.Exit(code=stop.exit_code)


def _run(config: Any, settings: Any, verbose: bool, steps: list[str] | None = None) -> Any:
    import time

    from autokfp.edge.local import STEP_LABELS, run_log_path, run_training
    from autokfp.modeling.registry_store import open_store

    with console.status("[bold]checking the data...", spinner="dots"):
        open_store(settings)  # a damaged registry stops the run before any step
        preflight(config)
    console.print(f"[bold]Running pipeline[/] autonomous-training for [cyan]{config.name}[/] "
                  f"(engines {', '.join(config.engine_names())}, "
                  f"{config.budget.max_runtime_secs}s each) with kfp.local; "
                  f"state in {settings.home}")
    if verbose:
        return run_training(config, settings, verbose=True)
    log_path = run_log_path(settings)
    started = time.monotonic()
    # the tasks' output goes to the log file while the run lasts (stdout is redirected), so
    # progress is written to a duplicate of the terminal taken before the redirection
    sys.stdout.flush()
    try:
        terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    except (OSError, ValueError, AttributeError):  # no real stdout (an embedding app, a test)
        terminal = io.StringIO()
    progress = Console(file=terminal, force_terminal=console.is_terminal,
                       force_interactive=console.is_interactive)
    try:
        with progress.status("starting...", spinner="dots") as status:
            def on_task(name: str) -> None:
                if steps is not None:
                    steps.append(name)
                elapsed = time.monotonic() - started
                progress.print(f"  [dim]{elapsed:5.0f}s[/] {STEP_LABELS.get(name, name)}")
                status.update(f"[bold]{STEP_LABELS.get(name, name)}...")

            result = run_training(config, settings, log_path=log_path, on_task=on_task)
    finally:
        terminal.flush()
        terminal.close()
    console.print(f"  [dim]Full log: {log_path}[/]")
    return result


@app.command()
def run(
    config_path: Path = typer.Argument(..., help="YAML run config", metavar="CONFIG.yaml"),
    home: Path | None = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every task's log"),
) -> None:
    """Run the autonomous training pipeline locally (kfp.local) for CONFIG."""
    from autokfp.config import load_config
    from autokfp.edge.interrupts import RunInterrupted, stop_on_signals

    steps: list[str] = []
    rerun = f"{command_name()} run {config_path}" + (f" --home {home}" if home else "")
    try:
        with stop_on_signals(lambda signum: interruption_line(signum, steps, rerun)):
            config = load_config(config_path)
            settings = _settings(home)
            result = _run(config, settings, verbose, steps)
    except AutokfpError as error:
        _fail(error)
    except RunInterrupted as stop:
        _interrupted(stop, steps, rerun)
    _print_result(result, config, settings, as_json, config_path=config_path.resolve())


@app.command()
def demo(
    home: Path | None = HomeOption,
    rows: int = typer.Option(6000, help="rows of example data (at least 1000)"),
    budget: int = typer.Option(120, help="each engine's training budget in seconds (10 to 86400)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every task's log"),
) -> None:
    """Generate the example churn data and run the training pipeline on it, end to end."""
    from autokfp.edge.interrupts import RunInterrupted, stop_on_signals
    from autokfp.examples.demo import check_demo_options, prepare_demo

    steps: list[str] = []
    rerun = f"{command_name()} demo" + (f" --home {home}" if home else "")
    try:
        with stop_on_signals(lambda signum: interruption_line(signum, steps, rerun)):
            check_demo_options(rows, budget)  # before anything is written
            settings = _settings(home)
            with console.status("[bold]generating example data...", spinner="dots"):
                config, data = prepare_demo(settings.home / "example_data", rows=rows,
                                            budget=budget)
            config_path = data.root / "churn.yaml"
            console.print(f"Example data: {data.files_dir} (CSV, Parquet) and "
                          f"{data.warehouse_db} (SQLite)")
            _print_where(config_path, settings)
            result = _run(config, settings, verbose, steps)
    except AutokfpError as error:
        _fail(error)
    except RunInterrupted as stop:
        _interrupted(stop, steps, rerun)
    _print_result(result, config, settings, as_json=False, config_path=config_path)


def _print_where(config_path: Path, settings: Any) -> None:
    """Where the run's config is and where its outputs will be (printed before a run)."""
    from autokfp.config import mask_url_password

    console.print(f"Run config  : {config_path}   (edit it, then: {command_name()} run {config_path})",
                  highlight=False, soft_wrap=True)
    console.print(f"Outputs     : {settings.home}   (registry {mask_url_password(settings.tracking_uri)}; "
                  f"pipeline runs {settings.pipeline_root}; logs {settings.home / 'logs'})",
                  highlight=False, soft_wrap=True)


def data_changes(result: Any, config: Any, settings: Any) -> list[str]:
    """What the run did to the data, from its own audit events (oldest first)."""
    from autokfp.governance.audit import read_events

    try:
        events = read_events(settings)[getattr(result, "audit_from", 0):]
    except AutokfpError:
        return []
    lines = []
    for event in events:
        if event.get("model") != config.name:
            continue
        details = event.get("details") or {}
        if event.get("kind") == "data.changed":
            lines += [f"{details.get('step', '?')}: {change}" for change in details.get("changes", [])]
        elif event.get("kind") == "feature.dropped":
            lines += [f"engineer-features: dropped column '{column}': {reason}"
                      for column, reason in (details.get("columns") or {}).items()]
    return lines


def _print_result(result: Any, config: Any, settings: Any, as_json: bool,
                  config_path: Path | None = None) -> None:
    from autokfp.config import mask_url_password
    from autokfp.modeling import registry

    models = {m["name"]: m for m in registry.list_models(settings)}
    model = models.get(config.name, {"versions": [], "aliases": {}})
    champion_version = model["aliases"].get("champion")
    champion = next((v for v in model["versions"] if v["version"] == str(champion_version)), None)
    warnings = _run_warnings(result, config, settings)
    summary = {
        "pipeline": result.pipeline,
        "seconds": round(result.seconds, 1),
        "registered": result.registration,
        "champion": champion,
        "data_changes": data_changes(result, config, settings),
        "warnings": [w["details"]["warning"] for w in warnings],
        "state": {
            "config": str(config_path) if config_path else None,
            "home": str(settings.home),
            "registry": mask_url_password(settings.tracking_uri),
            "artifacts": settings.artifact_root,
            "pipeline_run": str(result.run_dir) if result.run_dir else settings.pipeline_root,
            "catalog": str(settings.catalog_dir),
        },
    }
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    reg = result.registration
    console.print(f"\n[bold green]Pipeline finished[/] in {result.seconds:.0f}s. Registered "
                  f"[cyan]{reg['name']}[/] v{reg['version']} ({', '.join(reg['aliases'])}): "
                  f"{escape(str(reg['decision']))}")
    if champion:
        table = Table(title=f"champion: {config.name} v{champion['version']}", show_header=True)
        table.add_column("test metric")
        table.add_column("value", justify="right")
        for key, value in sorted(champion["metrics"].items()):
            if key.startswith("test_") and key != "test_rows":
                table.add_row(key[len("test_"):], f"{value:.4f}")
        console.print(table)
    changes = summary["data_changes"]
    if changes:
        console.print(f"What the run did to the data ({len(changes)}; also in 'autokfp audit'):")
        for line in changes[:30]:
            console.print(f"  - {escape(line)}", highlight=False)
        if len(changes) > 30:
            console.print(f"  ... and {len(changes) - 30} more (autokfp audit --model {config.name})")
    if warnings:
        console.print(f"[bold yellow]Warnings[/] ({len(warnings)}, also in the audit trail):")
        for event in warnings:
            console.print(f"  [yellow]![/] {event['details']['warning']}", highlight=False)
    decision = _deploy_decision(result.run_dir)
    if decision:
        console.print(f"Deployment: {decision['outcome']} ({decision['target']}): {decision['reason']}")
    if config_path is not None:
        console.print(f"Run config: {config_path}", highlight=False, soft_wrap=True)
    console.print(f"Registry  : {summary['state']['registry']}  ({command_name()} models)")
    console.print(f"Artifacts : {summary['state']['pipeline_run']}")
    console.print("Catalog   : the discover step's 'catalog' artifact (DataHub metadata) in the run above")
    console.print(f"Serve it  : {command_name()} serve --model {config.name}@champion --port 8080   "
                  f"(KServe manifest: the deploy step's 'manifest' artifact)")


def _run_warnings(result: Any, config: Any, settings: Any) -> list[dict]:
    """The warnings the run's steps recorded in the audit trail (strong predictors kept,
    fairness not run, ...)."""
    from autokfp.governance.audit import warnings_since

    started = getattr(result, "started_at", "")
    return warnings_since(started, model=config.name, settings=settings) if started else []


def _deploy_decision(run_dir: Any) -> dict | None:
    if run_dir is None:
        return None
    for path in Path(run_dir).rglob("decision"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return None


@app.command()
def models(
    home: Path | None = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List registered models, their versions, aliases and test metrics."""
    from autokfp.modeling import registry

    try:
        found = registry.list_models(_settings(home))
    except AutokfpError as error:
        _fail(error)
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2, default=str) + "\n")
        return
    if not found:
        console.print("No registered models yet. Run [bold]autokfp demo[/] or [bold]autokfp run CONFIG[/].")
        return
    for model in found:
        table = Table(title=model["name"])
        for column in ("version", "aliases", "engine", "dataset", "primary metric"):
            table.add_column(column)
        for version in model["versions"]:
            metrics = version["metrics"]
            metric = version.get("primary_metric") or "auc"
            value = metrics.get(f"test_{metric}")
            primary = "-" if value is None else f"{metric}={value:.4f}"
            label = version["version"]
            if version.get("state") == "incomplete":
                label += " (incomplete: registration interrupted or running; not usable)"
            table.add_row(label, ", ".join(version["aliases"]) or "-",
                          version["engine"] or "-", version["dataset"] or "-", primary)
        console.print(table)


@app.command()
def compile(  # noqa: A001 - the command is called compile
    out: Path = typer.Option(Path("compiled"), "--out", help="folder for the pipeline YAML files"),
    registry_prefix: str | None = typer.Option(
        None, "--image-registry", help="container registry for the images (default $AUTOKFP_IMAGE_REGISTRY)"),
    components_dir: Path | None = typer.Option(
        None, "--components", help="also write one component YAML per component into this folder"),
) -> None:
    """Compile every pipeline to KFP YAML (upload in the Kubeflow UI or submit with kfp.Client)."""
    from autokfp.edge.compilation import compile_all, compile_components

    if registry_prefix:
        os.environ["AUTOKFP_IMAGE_REGISTRY"] = registry_prefix
    try:
        written = compile_all(out)
        if components_dir is not None:
            written.update(compile_components(components_dir))
    except AutokfpError as error:
        _fail(error)
    for name, path in written.items():
        console.print(f"{name}: {path}")


@app.command()
def submit(
    config_path: Path = typer.Argument(..., help="YAML run config", metavar="CONFIG.yaml"),
    pipeline: str = typer.Option("autonomous-training", "--pipeline",
                                 help="autonomous-training, discovery or drift-monitoring"),
    host: str | None = typer.Option(None, "--host", envvar="KF_PIPELINES_ENDPOINT",
                                    help="Kubeflow Pipelines API, e.g. https://kubeflow.example.com/pipeline"),
    experiment: str = typer.Option("autokfp", "--experiment", help="experiment name"),
    run_name: str | None = typer.Option(None, "--run-name", help="default: <model>-<pipeline>-<time>"),
    namespace: str | None = typer.Option(None, "--namespace", help="user namespace (multi-user Kubeflow)"),
    token_env: str | None = typer.Option(None, "--token-env",
                                         help="environment variable holding a bearer token"),
    service_account: str | None = typer.Option(
        None, "--service-account",
        help="Kubernetes service account of the run's pods, e.g. autokfp-pipeline-runner"),
    allow_local_paths: bool = typer.Option(
        False, "--allow-local-paths",
        help="send folder/SQLite paths anyway (only if they exist inside the pods)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Start one run of a pipeline on Kubeflow with CONFIG (compiled here, sent with the run)."""
    from autokfp.config import load_config
    from autokfp.edge.scheduling import submit_run, token_from_env

    try:
        config = load_config(config_path)
        token = token_from_env(token_env)
        result = submit_run(config, pipeline=pipeline, host=host, experiment=experiment,
                            run_name=run_name, namespace=namespace, token=token,
                            service_account=service_account,
                            allow_local_paths=allow_local_paths)
    except AutokfpError as error:
        _fail(error)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False,
                          soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(f"Started run [cyan]{result.run_name}[/] ({result.run_id}) of {result.pipeline} "
                  f"in experiment {result.experiment}" + (f": {result.url}" if result.url else ""))


from autokfp.edge.serving_commands import register_commands as _register_serving_commands  # noqa: E402

_register_serving_commands(app)

from autokfp.edge.catalog_commands import register_commands as _register_catalog_commands  # noqa: E402

_register_catalog_commands(app)


from autokfp.edge.governance_commands import register_commands as _register_governance_commands  # noqa: E402

_register_governance_commands(app)

from autokfp.edge.monitoring_commands import register_commands as _register_monitoring_commands  # noqa: E402

_register_monitoring_commands(app)

from autokfp.edge.scoring_commands import register_commands as _register_scoring_commands  # noqa: E402

_register_scoring_commands(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
