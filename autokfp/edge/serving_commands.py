"""``autokfp serve``: serve a registered model locally with the KServe predictor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from autokfp.errors import AutokfpError, DeploymentError


def resolve_model(spec: str | None, settings) -> tuple[str, str, str]:
    """``NAME@ALIAS`` / ``NAME/VERSION`` / None (the only model's champion) → (name, version, local dir)."""
    import mlflow.artifacts

    from autokfp.modeling import registry

    client = registry.configure(settings)
    if spec is None:
        names = [m.name for m in client.search_registered_models()]
        if len(names) != 1:
            raise DeploymentError(
                "pass --model NAME@ALIAS: " + ("no model is registered yet (run autokfp demo)"
                                               if not names else f"several are registered: {names}"))
        spec = f"{names[0]}@{registry.CHAMPION}"
    if "@" in spec:
        name, alias = spec.split("@", 1)
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
        except Exception:  # noqa: BLE001 - MLflow raises its own exception types
            raise DeploymentError(f"model '{name}' has no version with alias '{alias}'; "
                                  "see autokfp models") from None
    elif "/" in spec:
        name, version = spec.split("/", 1)
    else:
        raise DeploymentError(f"--model '{spec}' must look like NAME@ALIAS (e.g. churn@champion) or NAME/VERSION")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
    except Exception as exc:  # noqa: BLE001
        raise DeploymentError(f"cannot fetch model {name} v{version} from the registry: {exc}") from None
    return name, version, local


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: str | None = typer.Option(None, "--model", "-m",
                                         help="NAME@ALIAS or NAME/VERSION (default: the champion)"),
        port: int = typer.Option(8080, help="HTTP port"),
        host: str = typer.Option("127.0.0.1", help=(
            "address to bind: 127.0.0.1 is this machine only; 0.0.0.0 exposes the server, "
            "which has no authentication, to the network")),
        home: Path | None = typer.Option(None, "--home", help="state folder"),
        log_predictions: bool = typer.Option(True, "--log-predictions/--no-log-predictions",
                                             help="append requests and predictions to the artifact store"),
    ) -> None:
        """Serve a registered model with the KServe predictor (v1 and v2 REST, /metrics)."""
        from rich.console import Console

        from autokfp.serving.predictor import serve as run_server
        from autokfp.settings import Settings

        console = Console(stderr=True)
        try:
            settings = Settings.from_env(home)
            settings.export()
            name, version, local = resolve_model(model, settings)
            service = name.replace("_", "-")
            console.print(f"Serving [cyan]{name}[/] v{version} on http://{host}:{port}\n"
                          f"  v1: POST /v1/models/{service}:predict  {{\"instances\": [{{...}}]}}\n"
                          f"  v2: POST /v2/models/{service}/infer    health: /v2/health/ready   "
                          f"metrics: /metrics")
            run_server(local, service, version, port=port, host=host,
                       prediction_log_uri=settings.artifact_root if log_predictions else None)
        except AutokfpError as error:
            console.print(f"[bold red]error:[/] {escape(str(error))}")
            raise typer.Exit(code=2) from None
