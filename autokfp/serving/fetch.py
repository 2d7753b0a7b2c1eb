"""Fetch a model package for the predictor when it is not already on disk.

KServe's storage initializer puts the model in ``/mnt/models`` before the container starts;
outside KServe (``docker run``, a plain Deployment) the serving image can fetch it itself
from ``MODEL_URI``: a registry URI (``models:/churn@champion``, ``runs:/...``, through
``MLFLOW_TRACKING_URI``), an object store prefix (``gs://``, ``s3://``, ``minio://``), or a
local folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from autokfp import storage
from autokfp.errors import DeploymentError

log = logging.getLogger(__name__)

_REGISTRY_SCHEMES = ("models:", "runs:", "mlflow-artifacts:")


def fetch_model(uri: str, dest: str | Path) -> Path:
    """The local folder holding the model package at ``uri`` (downloaded into ``dest``).

    Raises:
        DeploymentError: nothing (or no ``MLmodel``) was found at ``uri``.
        StorageError: the object store cannot be read.
    """
    dest = Path(dest)
    if uri.startswith(_REGISTRY_SCHEMES):
        import mlflow.artifacts

        from autokfp.config import mask_url_password
        from autokfp.modeling import registry

        registry.configure()
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
        except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for a bad URI
            raise DeploymentError(f"MODEL_URI '{uri}' could not be fetched from the registry at "
                                  f"{mask_url_password(registry.Settings.from_env().tracking_uri)}: "
                                  f"{exc}") from exc
    elif storage.is_remote(uri):
        storage.download_dir(uri, dest, overwrite=True)
        local = dest
    else:
        local = Path(uri)
    if not (local / "MLmodel").is_file():
        raise DeploymentError(f"MODEL_URI '{uri}' holds no model package (no MLmodel file in "
                              f"{local}); point it at the folder of a registered autokfp model")
    log.info("model %s fetched into %s", uri, local)
    return local
