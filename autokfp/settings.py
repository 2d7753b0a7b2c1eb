"""Where autokfp keeps state, read from the environment once.

Locally everything lives under ``AUTOKFP_HOME`` (default ``./.autokfp``):

    mlflow.db        MLflow tracking and registry (SQLite)
    mlartifacts/     MLflow run and model artifacts
    artifacts/       the artifact store (audit trail, reports, prediction logs)
    pipeline_root/   kfp.local pipeline root (every task's inputs and outputs)
    catalog/         DataHub metadata files and the local catalog

In a cluster the same names come from environment variables (set from the
``autokfp-config`` ConfigMap and Kubernetes secrets by the compiled pipeline):
``MLFLOW_TRACKING_URI``, ``AUTOKFP_ARTIFACT_ROOT`` (a path or ``gs://bucket/prefix``),
``AUTOKFP_IMAGE_REGISTRY``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMAGE_REGISTRY = "ghcr.io/autokfp"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of every piece of state."""

    home: Path
    tracking_uri: str
    artifact_root: str
    mlflow_artifact_root: str
    pipeline_root: str
    catalog_dir: Path
    image_registry: str

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None) -> Settings:
        """Read settings from the environment; ``home`` overrides ``AUTOKFP_HOME``."""
        home_path = Path(home or os.environ.get("AUTOKFP_HOME") or ".autokfp").expanduser()
        home_path = home_path.resolve()
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home_path / 'mlflow.db'}"
        artifact_root = os.environ.get("AUTOKFP_ARTIFACT_ROOT") or str(home_path / "artifacts")
        mlflow_artifacts = os.environ.get("AUTOKFP_MLFLOW_ARTIFACT_ROOT") or str(
            home_path / "mlartifacts"
        )
        pipeline_root = os.environ.get("AUTOKFP_PIPELINE_ROOT") or str(home_path / "pipeline_root")
        return cls(
            home=home_path,
            tracking_uri=tracking_uri,
            artifact_root=artifact_root.rstrip("/"),
            mlflow_artifact_root=mlflow_artifacts,
            pipeline_root=pipeline_root,
            catalog_dir=home_path / "catalog",
            image_registry=os.environ.get("AUTOKFP_IMAGE_REGISTRY", DEFAULT_IMAGE_REGISTRY).rstrip(
                "/"
            ),
        )

    def ensure_local_dirs(self) -> None:
        """Create the local folders (never touches remote stores)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.catalog_dir.mkdir(parents=True, exist_ok=True)
        for uri in (self.artifact_root, self.mlflow_artifact_root, self.pipeline_root):
            if "://" not in uri:
                Path(uri).mkdir(parents=True, exist_ok=True)

    def export(self) -> None:
        """Put the resolved settings into ``os.environ`` so pipeline tasks see the same state."""
        os.environ["AUTOKFP_HOME"] = str(self.home)
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        os.environ["AUTOKFP_ARTIFACT_ROOT"] = self.artifact_root
        os.environ["AUTOKFP_MLFLOW_ARTIFACT_ROOT"] = self.mlflow_artifact_root
        os.environ["AUTOKFP_PIPELINE_ROOT"] = self.pipeline_root


def image(name: str, registry: str | None = None, version: str | None = None) -> str:
    """The container image for ``name`` (runtime, training, serving), tagged with the version.

    The tag follows the package version so a release pins code and image together.
    """
    from autokfp import __version__

    registry = (registry or os.environ.get("AUTOKFP_IMAGE_REGISTRY") or DEFAULT_IMAGE_REGISTRY)
    tag = (version or __version__).replace("+", "-")
    return f"{registry.rstrip('/')}/autokfp-{name}:{tag}"
