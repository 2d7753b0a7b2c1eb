"""Where autokfp keeps state, read from the environment once.

Locally everything lives under ``AUTOKFP_HOME`` (default ``./.autokfp``):

    mlflow.db        MLflow tracking and registry (SQLite)
    mlartifacts/     MLflow run and model artifacts
    artifacts/       the artifact store (audit trail, reports, prediction logs)
    pipeline_root/   kfp.local pipeline root (every task's inputs and outputs)
    catalog/         DataHub metadata files and the local catalog

In a cluster the same names come from environment variables (set from the
``autokfp-config`` ConfigMap and Kubernetes secrets by the compiled pipeline):
``MLFLOW_TRACKING_URI``, ``AUTOKFP_ARTIFACT_ROOT`` (a path, ``gs://``, ``s3://`` or
``minio://bucket/prefix``), ``AUTOKFP_MLFLOW_ARTIFACT_ROOT``, ``AUTOKFP_IMAGE_REGISTRY``.

Where MLflow keeps a run's artifacts (the model files) decides whether anyone else can
read them, so it is resolved in this order:

1. ``AUTOKFP_MLFLOW_ARTIFACT_ROOT`` when set (``gs://``, ``s3://``, or the server's proxy
   ``mlflow-artifacts:/prefix``);
2. with a tracking *server* and a remote artifact store: ``<AUTOKFP_ARTIFACT_ROOT>/mlflow``;
3. with a tracking server and no remote store: the server's own default (None here);
4. with the local SQLite registry: ``$AUTOKFP_HOME/mlartifacts``.

A task never writes a model to its own disk when a registry server is configured: the
next task, the next run and KServe would find an empty folder there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMAGE_REGISTRY = "ghcr.io/autokfp"

# what turns an on/off switch in the environment (AUTOKFP_TASK_FORK, AUTOKFP_WARM_PREDICTOR,
# AUTOKFP_MOJO_SCORER) off; anything else, or unset, leaves it as it is
OFF_VALUES = ("0", "false", "no", "off")


def switched_off(value: str | None) -> bool:
    """Whether a switch's value in the environment turns it off (``OFF_VALUES``, any case)."""
    return (value or "").strip().lower() in OFF_VALUES


@contextlib.contextmanager
def environ_set(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` while open (for the processes started meanwhile); what
    was there before, a value or nothing, is put back on leaving."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@dataclass(frozen=True)
class Settings:
    """Resolved locations of every piece of state."""

    home: Path
    tracking_uri: str
    artifact_root: str
    mlflow_artifact_root: str | None
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
        mlflow_artifacts = _mlflow_artifact_root(
            os.environ.get("AUTOKFP_MLFLOW_ARTIFACT_ROOT"), tracking_uri, artifact_root, home_path
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
            if uri and ":" not in uri.split("/", 1)[0]:
                Path(uri).mkdir(parents=True, exist_ok=True)

    def export(self) -> None:
        """Put the resolved settings into ``os.environ`` so pipeline tasks see the same state."""
        os.environ["AUTOKFP_HOME"] = str(self.home)
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        os.environ["AUTOKFP_ARTIFACT_ROOT"] = self.artifact_root
        if self.mlflow_artifact_root:
            os.environ["AUTOKFP_MLFLOW_ARTIFACT_ROOT"] = self.mlflow_artifact_root
        else:
            os.environ.pop("AUTOKFP_MLFLOW_ARTIFACT_ROOT", None)
        os.environ["AUTOKFP_PIPELINE_ROOT"] = self.pipeline_root

    @property
    def shared_registry(self) -> bool:
        """Whether the registry is a server that other processes and pods reach."""
        return is_server_uri(self.tracking_uri)


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def run_namespace() -> str:
    """The Kubernetes namespace this run executes in.

    In a pod: the namespace of its service account (a KFP run's pods live in the run's
    namespace, the profile namespace in multi-user Kubeflow). Outside a cluster: the current
    kubeconfig context's namespace. Else ``default``.
    """
    if in_cluster():
        try:
            found = SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
        except OSError:
            found = ""
        if found:
            return found
    try:
        from kubernetes import config as kube_config

        # the kubernetes package reads KUBECONFIG once, at import: pass it on each call
        kubeconfig = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
        _, active = kube_config.list_kube_config_contexts(
            config_file=os.path.expanduser(kubeconfig))
        found = (active or {}).get("context", {}).get("namespace") or ""
    except Exception:  # noqa: BLE001 - no kubeconfig, or an unreadable one: not an error here
        found = ""
    return found or "default"


def in_cluster() -> bool:
    """Whether this process runs in a Kubernetes pod (the kubelet sets this variable)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def require_shared_state(settings: Settings | None = None) -> None:
    """In a pod, refuse to start without a shared registry and artifact store.

    A pod's own disk is gone when it ends: a registry or store there silently throws away
    every model and report, and the run would only fail at deploy with "no champion is
    registered". So the first step stops at once instead, naming the ConfigMap key to set.
    Outside Kubernetes, and for local runs in a pod (a notebook), this does nothing: local
    runs keep everything under AUTOKFP_HOME.

    Raises:
        ConfigError: a setting is missing or names this pod's disk.
    """
    from autokfp.errors import ConfigError

    # A local run (kfp.local, which sets AUTOKFP_RUNNER_PID) in a pod, e.g. from a Kubeflow
    # notebook, keeps its state under AUTOKFP_HOME on purpose.
    if not in_cluster() or os.environ.get("AUTOKFP_RUNNER_PID"):
        return
    settings = settings or Settings.from_env()
    problems = []
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking:
        problems.append("MLFLOW_TRACKING_URI is not set: set it to the MLflow server's URL, "
                        "e.g. http://mlflow.mlflow.svc.cluster.local:5000")
    elif not settings.shared_registry:
        problems.append(f"MLFLOW_TRACKING_URI is '{tracking}', a store on this pod's disk: "
                        "set it to the MLflow server's URL (http://...)")
    if not os.environ.get("AUTOKFP_ARTIFACT_ROOT", "").strip():
        problems.append("AUTOKFP_ARTIFACT_ROOT is not set: set it to a gs://, s3:// or "
                        "minio:// prefix, e.g. gs://my-bucket/autokfp")
    elif settings.mlflow_artifact_root and is_local_location(settings.mlflow_artifact_root):
        problems.append(f"AUTOKFP_MLFLOW_ARTIFACT_ROOT is '{settings.mlflow_artifact_root}', "
                        "a folder on this pod's disk: set it to a gs:// or s3:// prefix, or "
                        "leave it empty to use <AUTOKFP_ARTIFACT_ROOT>/mlflow")
    if problems:
        raise ConfigError(
            "This task runs in Kubernetes but has no shared state, so nothing it registers or "
            "writes would outlive the pod. Set in ConfigMap autokfp-config (kubectl edit "
            "configmap autokfp-config -n <namespace>; see manifests/base/namespace-config.yaml): "
            + "; ".join(problems) + ".")


def is_server_uri(tracking_uri: str) -> bool:
    """A tracking URI that names a server (http, https, databricks), not a file or database
    on this machine's disk."""
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    return scheme in ("http", "https") or tracking_uri.startswith("databricks")


def is_local_location(uri: str | None) -> bool:
    """A path or file:// URI: a folder only this machine (pod) can see."""
    if not uri:
        return False
    head = uri.split("/", 1)[0]
    return ":" not in head or uri.lower().startswith("file:")


def _mlflow_artifact_root(explicit: str | None, tracking_uri: str, artifact_root: str,
                          home: Path) -> str | None:
    if explicit:
        return explicit.rstrip("/")
    if not is_server_uri(tracking_uri):
        return str(home / "mlartifacts")
    if not is_local_location(artifact_root):
        return artifact_root.rstrip("/") + "/mlflow"
    return None  # the server's own artifact store (its --artifacts-destination)


# The files the autokfp wheel ships: its modules and pyproject.toml's package-data
# ("*.md", "*.yaml", "*.json"), components/ and pipelines/ included (autokfp/components and
# autokfp/pipelines are symlinks to them in a checkout).
CODE_SUFFIXES = (".py", ".md", ".yaml", ".json")


@functools.cache
def code_fingerprint(package_dir: str | None = None) -> str:
    """Twelve hex digits of SHA-256 over the autokfp package's code: what an image runs.

    Every file the wheel ships (``CODE_SUFFIXES``, ``__pycache__`` left out) is hashed with its
    path inside the package, in a fixed order, so a checkout, an editable install, the built
    wheel and that wheel installed in an image all give the same value for the same code.
    ``package_dir`` is the ``autokfp`` folder to hash (default: the one imported).
    """
    import autokfp

    root = Path(package_dir) if package_dir else Path(autokfp.__file__).parent
    files: list[tuple[str, Path]] = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in names:
            if name.endswith(CODE_SUFFIXES):
                path = Path(folder) / name
                files.append((path.relative_to(root).as_posix(), path))
    if not files:
        raise FileNotFoundError(f"no autokfp code under {root}: cannot fingerprint it")
    digest = hashlib.sha256()
    for relative, path in sorted(files):
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_tag(version: str | None = None) -> str:
    """The tag of the images built from this code: ``<version>-<code fingerprint>``.

    The version alone does not tell two builds apart (every build of a branch says 0.1.0),
    so a pipeline compiled from newer code could run in an older image of the same tag and
    fail there, or silently run old code. With the fingerprint of the code in the tag a
    compiled pipeline names exactly the images built from its own code: an image that was
    not built from it is not found, instead of being run. ``scripts/build_images.sh`` tags
    with this, and each image's build checks that its installed code gives the same tag.
    """
    from autokfp import __version__

    return f"{(version or __version__).replace('+', '-')}-{code_fingerprint()}"


def image(name: str, registry: str | None = None, version: str | None = None) -> str:
    """The container image for ``name`` (runtime, training, serving, serving-keras).

    Tagged ``<version>-<code fingerprint>`` (``image_tag``): the images built from exactly
    the code that compiles the pipeline.
    """
    registry = (registry or os.environ.get("AUTOKFP_IMAGE_REGISTRY") or DEFAULT_IMAGE_REGISTRY)
    return f"{registry.rstrip('/')}/autokfp-{name}:{image_tag(version)}"


def child_stall_secs() -> float:
    """How long a child autokfp forked and waits on may go without progress before it is
    stopped and its work done another way (``lifeline.Stall``): ``AUTOKFP_CHILD_STALL_SECS``,
    default ``lifeline.DEFAULT_STALL_SECS`` (why that value is said there).

    Raises:
        ConfigError: the variable is set to something else than a positive number."""
    from autokfp import lifeline
    from autokfp.errors import ConfigError

    text = os.environ.get(lifeline.STALL_ENV, "").strip()
    if not text:
        return lifeline.DEFAULT_STALL_SECS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{lifeline.STALL_ENV}={text!r}: give the seconds a child process "
                          "(DataHub's source beside the crawl, the Lite writer, a forked "
                          "predictor) may go without progress before it is stopped and its "
                          "work done another way (a positive number; default "
                          f"{lifeline.DEFAULT_STALL_SECS:.0f})")
    return seconds
