"""``autokfp score``: the batch-scoring pipeline, locally (kfp.local) or as a Kubeflow
recurring run (``--cron``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from autokfp.errors import AutokfpError


def score_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help=(
        "the data to score: a gs:// or s3:// URI or a path of one Parquet/CSV file, a "
        "folder of Parquet parts (a path, or a gs:// or s3:// prefix ending in /), "
        "<database URL>#<table>, or <source>/<table> of --config's sources")),
    model: str = typer.Option("from config", "--model", "-m", help=(
        "NAME@ALIAS, NAME (its champion) or NAME/VERSION (default: --config's model's champion)")),
    output: str = typer.Option("artifact store", "--output", "-o", help=(
        "a folder, gs:// or s3:// prefix, or <database URL>#<table> (default: "
        "<AUTOKFP_ARTIFACT_ROOT>/scores)")),
    keys: str = typer.Option("from model", "--keys", help=(
        "comma-separated key columns written next to each prediction (default: the model's "
        "identifier columns, else the row number)")),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", help="rows scored and written at a time"),
    config_path: Path | None = typer.Option(None, "--config", help="a run config for its sources and name"),
    cron: str | None = typer.Option(None, "--cron", help=(
        "create a Kubeflow recurring run instead (6 fields, seconds first), with --host")),
    host: str | None = typer.Option(None, "--host", envvar="KF_PIPELINES_ENDPOINT",
                                    help="Kubeflow Pipelines API (with --cron)"),
    namespace: str | None = typer.Option(None, "--namespace", help="user namespace (with --cron)"),
    token_env: str | None = typer.Option(None, "--token-env", help="variable holding a bearer token"),
    service_account: str | None = typer.Option(None, "--service-account",
                                               help="service account of the runs' pods"),
    home: Path | None = typer.Option(None, "--home", help="state folder (local runs)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream the task's log"),
) -> None:
    """Score a dataset with a registered model (chunked; a rerun skips finished chunks)."""
    from autokfp.config import load_config
    from autokfp.settings import Settings
    from autokfp.steps.score_batch import parse_model

    console = Console()
    try:
        config = load_config(config_path) if config_path else None
        sources = {source.name for source in config.sources} if config else set()
        if ("://" not in dataset and "#" not in dataset and dataset.split("/", 1)[0] not in sources
                and Path(dataset).expanduser().exists()):
            # a file or a folder of parts, as typed relative to here (not <source>/<file> of
            # --config): the scoring task takes absolute paths only
            dataset = str(Path(dataset).expanduser().resolve())
        form = {"dataset": dataset, "model": model, "output": output, "keys": keys,
                "chunk_rows": chunk_rows}
        # a malformed --model fails here, not minutes later inside the scoring task (or on
        # every tick of a recurring run)
        parse_model(model, config.to_dict() if config else None, what="--model")
        if cron:
            from autokfp.edge.scheduling import schedule_batch_scoring, token_from_env

            scheduled = schedule_batch_scoring(
                form, cron, config=config, host=host, namespace=namespace,
                token=token_from_env(token_env), service_account=service_account)
            if as_json:
                console.print_json(json.dumps(scheduled.to_dict()))
            else:
                verb = "Created" if scheduled.created else "Already scheduled:"
                console.print(f"{verb} recurring run [cyan]{scheduled.name}[/] "
                              f"({scheduled.recurring_run_id}), cron '{scheduled.cron}'")
            return
        from autokfp.edge.local import run_scoring

        settings = Settings.from_env(home)
        log_path = None if verbose else settings.home / "logs" / (
            f"score-{time.strftime('%Y%m%d-%H%M%S')}.log")
        with console.status("[bold]scoring...", spinner="dots"):
            summary = run_scoring(form, config, settings, log_path=log_path)
    except AutokfpError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                                   soft_wrap=True)
        raise typer.Exit(code=error.exit_code) from None
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    console.print(f"Scored {summary['rows']} rows of {summary['dataset']} with "
                  f"[cyan]{summary['model']}[/] v{summary['version']}: {summary['chunks']} "
                  f"chunk(s), {summary['skipped_chunks']} already written and skipped")
    console.print(f"Predictions: {summary['output']}")
    if log_path:
        console.print(f"  [dim]Full log: {log_path}[/]")


def register_commands(app: typer.Typer) -> None:
    """Add ``score``."""
    app.command("score")(score_command)
