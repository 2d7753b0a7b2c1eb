"""Governance commands of the ``autokfp`` command line.

    autokfp audit [--verify] [--json] [--model NAME]   the audit trail; --verify recomputes
                                                       the hash chain and names the first
                                                       edited, reordered or deleted event
    autokfp approve MODEL VERSION [--note TEXT]        record a person's approval

``register_commands(app)`` adds them to the main Typer app. An error a user can cause
prints one message on stderr and exits with code 2; a trail that does not verify exits 1.
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

from autokfp.errors import AutokfpError

_HOME_HELP = "state folder (default: $AUTOKFP_HOME or ./.autokfp)"


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr)


def _fail(error: AutokfpError) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True,
                                soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def _settings(home: Path | None) -> Any:
    from autokfp.settings import Settings

    settings = Settings.from_env(home)
    settings.export()
    return settings


def _summary(details: dict[str, Any], width: int = 70) -> str:
    """The gist of an event's details: its reason or verdict when it has one."""
    for key in ("reason", "summary", "verdict", "note"):
        if details.get(key):
            text = str(details[key])
            break
    else:
        text = json.dumps(details, default=str, sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + "..."


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def audit(
        verify: bool = typer.Option(False, "--verify", help="recompute the hash chain and report "
                                                            "any edited, reordered or deleted event"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        model: str | None = typer.Option(None, "--model", "-m", help="only events about this model"),
        home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    ) -> None:
        """List the audit trail of autonomous decisions (and verify it with --verify)."""
        from autokfp.governance import audit as trail

        settings = _settings(home)
        verification = trail.verify_trail(settings) if verify else None
        try:
            events = trail.read_events(settings)
        except AutokfpError as error:
            if verification is None:
                _fail(error)
            events = []
        if model:
            events = [e for e in events if e.get("model") == model]
        if as_json:
            out: dict[str, Any] = {"trail": trail.trail_uri(settings), "events": events}
            if verification is not None:
                out["verification"] = {"ok": verification.ok, "events": verification.events,
                                       "problems": verification.problems}
            sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        else:
            console = _console()
            if not events:
                console.print(f"No audit events yet ({trail.trail_uri(settings)}).")
            else:
                table = Table(title=f"audit trail: {trail.trail_uri(settings)}")
                for column in ("#", "time (UTC)", "kind", "model"):
                    table.add_column(column, no_wrap=True)
                table.add_column("actor", overflow="fold")
                table.add_column("details", overflow="fold", ratio=1)
                for event in events:
                    table.add_row(str(event.get("seq")), str(event.get("timestamp", ""))[:19],
                                  str(event.get("kind")),
                                  f"{event.get('model') or '-'}"
                                  + (f" v{event['version']}" if event.get("version") else ""),
                                  str(event.get("actor", "")), _summary(event.get("details", {})))
                console.print(table)
            if verification is not None:
                if verification.ok:
                    console.print(f"[green]verified[/]: {verification.events} events, the hash "
                                  "chain is intact")
                else:
                    err = _console(stderr=True)
                    err.print("[bold red]audit trail verification FAILED[/]", highlight=False)
                    for problem in verification.problems:
                        err.print(f"  {problem}", highlight=False, soft_wrap=True)
        if verification is not None and not verification.ok:
            raise typer.Exit(code=1)

    @app.command()
    def approve(
        model: str = typer.Argument(..., help="registered model name"),
        version: str = typer.Argument(..., help="model version to approve"),
        note: str | None = typer.Option(None, "--note", help="why (kept in the audit trail)"),
        by: str | None = typer.Option(None, "--by", help="who approves (default: $AUTOKFP_ACTOR "
                                                         "or the login name)"),
        home: Path | None = typer.Option(None, "--home", help=_HOME_HELP),
    ) -> None:
        """Record a person's approval of MODEL VERSION for production (audit event + MLflow tag)."""
        from autokfp.governance.approval import approve as grant

        settings = _settings(home)
        try:
            event = grant(model, version, actor=by, note=note, settings=settings)
        except AutokfpError as error:
            _fail(error)
        _console().print(f"Approved [cyan]{model}[/] v{version} by {event['actor']} "
                         f"(audit event #{event['seq']}, {event['hash'][:12]})")
