"""The catalog's commands of the ``autokfp`` command line.

    autokfp discover CONFIG [--json] [--refresh]   crawl + catalog + schema-evolution report
    autokfp catalog [--json]                       datasets, schema versions, tags
    autokfp catalog show DATASET [--json]          one dataset: versions, changes, columns
    autokfp catalog accept DATASET                 accept the latest schema for training
    autokfp lineage NAME [--json]                  upstream and downstream of a model/dataset
    autokfp impact DATASET [--json]                what depends on a dataset

``register_commands(app)`` adds them to the main Typer app. Like the rest of the CLI, an
error a user can cause prints one message on stderr and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from autokfp.errors import AutokfpError


def _console(stderr: bool = False) -> Console:
    # made per call so the terminal width (COLUMNS) is read when a command runs
    return Console(stderr=stderr)

_HOME_HELP = "state folder (default: $AUTOKFP_HOME or ./.autokfp)"
_STATUS_STYLE = {"new": "blue", "unchanged": "dim", "changed": "yellow", "failed": "red",
                 "missing": "magenta"}


def _fail(error: AutokfpError) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True,
                      soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def _settings(home: Path | None, create: bool = False):
    from autokfp.settings import Settings

    settings = Settings.from_env(home)
    if create:
        settings.ensure_local_dirs()
    return settings


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _schema_cell(version: Any, accepted: Any) -> str:
    if not version:
        return "-"
    text = f"v{version}"
    if accepted and accepted != version:
        text += f" (accepted v{accepted})"
    return text


def _verdict_cell(verdict: str | None) -> str:
    if verdict == "breaking":
        return "[bold red]BREAKING[/]"
    if verdict == "compatible":
        return "[yellow]compatible[/]"
    return verdict or "-"


# --------------------------------------------------------------------------- discover


def _print_crawl(report: Any, settings: Any) -> None:
    from autokfp.catalog.datahub import lite_home

    counts = report.counts()
    table = Table(title=f"Crawl: {counts['catalogued']} dataset(s) catalogued, "
                        f"{counts['failed']} failed, in {report.seconds:.1f}s")
    for column in ("dataset", "status", "schema", "verdict", "rows", "cols", "PII / sensitive"):
        table.add_column(column, overflow="fold")
    for d in sorted(report.datasets, key=lambda d: (not d.breaking, d.dataset_id)):
        style = _STATUS_STYLE.get(d.status, "")
        status = f"[{style}]{d.status}[/]" + (" (cached)" if d.reused else "")
        protected = ", ".join(d.pii_columns + [c for c in d.sensitive_columns
                                               if c not in d.pii_columns])
        table.add_row(d.dataset_id, status, _schema_cell(d.version, d.accepted_version),
                      _verdict_cell(d.verdict) if d.status not in ("failed", "missing") else "-",
                      "-" if d.rows is None else str(d.rows),
                      "-" if d.columns is None else str(d.columns), protected or "-")
    _console().print(table)
    changed = [d for d in report.datasets if d.reasons and d.status != "failed"]
    for d in changed:
        colour = "red" if d.breaking else "yellow"
        _console().print(f"[{colour}]{d.dataset_id}[/] v{d.accepted_version} -> v{d.version}:")
        for reason in d.reasons:
            _console().print(f"   {reason}", highlight=False)
        if d.breaking:
            _console().print(f"   Training on it is refused until the source is fixed or you run "
                          f"[bold]autokfp catalog accept {d.dataset_id}[/]", highlight=False)
    problems = [(d.dataset_id, d.error) for d in report.datasets if d.error]
    problems += [(f"source {name}", error) for name, error in report.source_errors.items()]
    if problems:
        _console().print("[bold red]Could not be catalogued:[/]")
        for name, error in problems:
            _console().print(f"  [red]{escape(str(name))}[/]: {escape(str(error))}", highlight=False, soft_wrap=True)
    notes = [(d.dataset_id, note) for d in report.datasets for note in d.notes]
    if notes:  # catalogued, with something left out or read differently (a view's lineage)
        _console().print("[bold yellow]Notes:[/]")
        for name, note in notes:
            _console().print(f"  [yellow]{escape(name)}[/]: {escape(note)}", highlight=False,
                             soft_wrap=True)
    published = report.published or {}
    _console().print(f"Catalog   : {report.catalog}", highlight=False)
    _console().print(f"DataHub   : Lite {settings.catalog_dir / 'datahub-lite.db'} (browse: "
                  f"HOME={lite_home(settings.catalog_dir)} datahub lite ls /)", highlight=False)
    if published.get("gms_url"):
        outcome = published.get("gms_error") or f"{published['gms_sent']} aspect(s) sent"
        _console().print(f"DataHub GMS: {published['gms_url']}: {outcome}", highlight=False)
    if published.get("lite_error"):
        _console().print(f"[yellow]warning:[/] {published['lite_error']}", highlight=False)


def discover_command(
    config_path: Path = typer.Argument(..., help="YAML run config", metavar="CONFIG"),
    home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the crawl report as JSON"),
    refresh: bool = typer.Option(False, "--refresh",
                                 help="read every input again (ignore the crawl cache)"),
) -> None:
    """Crawl every source of CONFIG into the catalog and report schema changes."""
    from autokfp.catalog.crawl import crawl_sources
    from autokfp.config import load_config

    try:
        config = load_config(config_path)
        settings = _settings(home, create=True)
        if as_json:
            report = crawl_sources(config, settings=settings, refresh=refresh)
        else:
            with _console().status(f"[bold]crawling {len(config.sources)} source(s)...",
                                spinner="dots"):
                report = crawl_sources(config, settings=settings, refresh=refresh)
    except AutokfpError as error:
        _fail(error)
    if as_json:
        _print_json(report.to_dict())
        return
    _print_crawl(report, settings)


# --------------------------------------------------------------------------- catalog


def _catalog_listing(settings: Any) -> list[dict[str, Any]]:
    from autokfp.catalog.store import CatalogStore

    index = CatalogStore(settings).load_index()
    return [index[k] for k in sorted(index)]


def catalog_callback(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List catalogued datasets: schema versions, verdicts, row counts and tags."""
    ctx.obj = {"home": home}
    if ctx.invoked_subcommand is not None:
        return
    try:
        datasets = _catalog_listing(_settings(home))
    except AutokfpError as error:
        _fail(error)
    if as_json:
        _print_json(datasets)
        return
    if not datasets:
        _console().print("The catalog is empty. Run [bold]autokfp discover CONFIG[/] first.")
        return
    table = Table(title=f"Catalog: {len(datasets)} dataset(s)")
    for column in ("dataset", "platform", "schema", "verdict", "rows", "cols", "tags",
                   "last crawled"):
        table.add_column(column, overflow="fold")
    for d in datasets:
        verdict = _verdict_cell(d.get("verdict"))
        if d.get("status") in ("failed", "missing"):
            verdict = f"[red]{d['status']}[/]"
        table.add_row(d["dataset_id"], d.get("platform") or "-",
                      _schema_cell(d.get("latest_version"), d.get("accepted_version")), verdict,
                      str(d.get("row_count", "-")), str(d.get("columns", "-")),
                      ", ".join(d.get("tags", [])) or "-", (d.get("last_crawled") or "-")[:19])
    _console().print(table)
    troubled = [d for d in datasets if d.get("last_error") or d.get("verdict") == "breaking"]
    for d in troubled:
        if d.get("verdict") == "breaking":
            _console().print(f"[red]{d['dataset_id']}[/]: breaking change in "
                          f"{', '.join(d.get('breaking_columns', []))}; accept it with "
                          f"autokfp catalog accept {d['dataset_id']}", highlight=False)
        if d.get("last_error"):
            _console().print(f"[red]{d['dataset_id']}[/]: {d['last_error']}", highlight=False)


def show_command(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="dataset id, e.g. warehouse/customers"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show one dataset: its schema versions, what changed, and its columns."""
    from autokfp.catalog.store import CatalogStore

    try:
        store = CatalogStore(_settings((ctx.obj or {}).get("home")))
        entry = store.entry(dataset)
        versions = store.versions(dataset)
    except AutokfpError as error:
        _fail(error)
    if as_json:
        _print_json({"dataset": entry, "versions": versions})
        return
    _console().print(f"[bold]{dataset}[/] ({entry.get('platform')}: {entry.get('location')})",
                  highlight=False)
    for record in versions:
        marker = " (accepted)" if record["version"] == entry.get("accepted_version") else ""
        change = record.get("change") or {}
        _console().print(f"  v{record['version']}{marker} {record['recorded_at'][:19]} "
                      f"{record['fingerprint']}: {record.get('verdict')}", highlight=False)
        for reason in change.get("reasons", []):
            _console().print(f"      {reason}", highlight=False)
    if versions:
        table = Table(title=f"columns of v{versions[-1]['version']}")
        for column in ("column", "physical", "semantic", "nulls", "distinct", "tags"):
            table.add_column(column)
        for c in versions[-1]["schema"]["columns"]:
            table.add_row(c["name"], c["physical_type"], c["semantic_type"],
                          str(c["null_count"]), str(c["distinct_count"]),
                          ", ".join(c.get("tags", [])) or "-")
        _console().print(table)


def accept_command(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="dataset id, e.g. warehouse/customers"),
) -> None:
    """Accept DATASET's latest schema version as the baseline training runs against."""
    from autokfp.catalog.crawl import accept_schema

    try:
        result = accept_schema(dataset, _settings((ctx.obj or {}).get("home")))
    except AutokfpError as error:
        _fail(error)
    if result["changed"]:
        _console().print(f"Accepted {dataset} schema v{result['accepted_version']} (was "
                      f"v{result['previous_accepted_version']}); training on it may run again.",
                      highlight=False)
    else:
        _console().print(f"{dataset} schema v{result['accepted_version']} was already accepted.",
                      highlight=False)


# --------------------------------------------------------------------------- lineage


def _node_label(node: dict[str, Any]) -> str:
    kind = node.get("kind", "").replace("_", " ")
    label = f"[bold]{node.get('name')}[/]" + (f" [dim]({kind})[/]" if kind else "")
    if node.get("aliases"):
        label += f" [cyan]{', '.join(node['aliases'])}[/]"
    return label


def lineage_command(
    name: str = typer.Argument(..., help="a model name, 'model v3', a dataset id or a URN"),
    home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show what NAME was built from (upstream) and what depends on it (downstream)."""
    from autokfp.catalog.lineage import lineage

    try:
        found = lineage(name, _settings(home))
    except AutokfpError as error:
        _fail(error)
    if as_json:
        _print_json(found)
        return
    for item in found:
        tree = Tree(_node_label(item["node"]))
        up = tree.add("[dim]upstream[/]")
        for node in item["upstream"] or [{"name": "(nothing recorded)", "kind": ""}]:
            up.add(("  " * max(0, node.get("depth", 1) - 1)) + _node_label(node))
        down = tree.add("[dim]downstream[/]")
        for node in item["downstream"] or [{"name": "(nothing depends on it)", "kind": ""}]:
            down.add(("  " * max(0, node.get("depth", 1) - 1)) + _node_label(node))
        _console().print(tree)


def impact_command(
    dataset: str = typer.Argument(..., help="dataset id, e.g. warehouse/customers, or a URN"),
    home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List every feature set, model version and deployment that depends on DATASET."""
    from autokfp.catalog.lineage import impact

    try:
        found = impact(dataset, _settings(home))
    except AutokfpError as error:
        _fail(error)
    if as_json:
        _print_json(found)
        return
    rows = [(kind, node) for kind in ("datasets", "feature_sets", "model_versions",
                                      "deployments") for node in found[kind]]
    if not rows:
        _console().print(f"Nothing depends on {dataset} yet (no feature set, model or deployment "
                      "was recorded from it).", highlight=False)
        return
    table = Table(title=f"Impact of a change to {dataset}")
    for column in ("kind", "name", "details"):
        table.add_column(column, overflow="fold")
    for kind, node in rows:
        details = []
        if node.get("aliases"):
            details.append("aliases: " + ", ".join(node["aliases"]))
        if node.get("schema_version"):
            details.append(f"trained on schema v{node['schema_version']}")
        if node.get("namespace"):
            details.append(f"serves v{node.get('version')}")
        table.add_row(kind.rstrip("s").replace("_", " "), node["name"], "; ".join(details))
    _console().print(table)


# --------------------------------------------------------------------------- wiring


def register_commands(app: typer.Typer) -> None:
    """Add ``discover``, ``catalog`` (with ``show``/``accept``), ``lineage`` and ``impact``."""
    app.command("discover")(discover_command)
    catalog_app = typer.Typer(add_completion=False, invoke_without_command=True,
                              help="The data catalog: datasets, schema versions, tags.")
    catalog_app.callback(invoke_without_command=True)(catalog_callback)
    catalog_app.command("show")(show_command)
    catalog_app.command("accept")(accept_command)
    app.add_typer(catalog_app, name="catalog")
    app.command("lineage")(lineage_command)
    app.command("impact")(impact_command)
