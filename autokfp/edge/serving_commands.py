"""``autokfp serve``: serve a registered model locally with the KServe predictor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from autokfp.errors import AutokfpError, DeploymentError


def resolve_model(spec: str | None, settings) -> tuple[str, str, str]:
    """``NAME@ALIAS`` / ``NAME/VERSION`` / ``NAME`` (its champion) / None (the only registered
    model's champion) → (name, version, local dir)."""
    import mlflow.artifacts

    from autokfp.modeling import registry

    # a malformed --model fails before the registry is opened (or, locally, created)
    ref = registry.parse_model_ref(spec, what="--model") if spec is not None else None
    client = registry.configure(settings)
    if ref is None:
        names = [m.name for m in client.search_registered_models()]
        if len(names) != 1:
            raise DeploymentError(
                "pass --model NAME@ALIAS: " + ("no model is registered yet (run autokfp demo)"
                                               if not names else f"several are registered: {names}"))
        ref = registry.ModelRef(names[0], alias=registry.CHAMPION)
    version = ref.version
    if version is None:
        try:
            version = str(client.get_model_version_by_alias(ref.name, ref.alias).version)
        except Exception:  # noqa: BLE001 - MLflow raises its own exception types
            raise DeploymentError(f"model '{ref.name}' has no version with alias '{ref.alias}'; "
                                  "see autokfp models") from None
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref.name}/{version}")
    except Exception as exc:  # noqa: BLE001
        raise DeploymentError(f"cannot fetch model {ref.name} v{version} from the registry: {exc}") from None
    return ref.name, version, local


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: str | None = typer.Option(None, "--model", "-m",
                                         help="NAME@ALIAS, NAME/VERSION or NAME (its champion); default: the only model's champion"),
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
