"""The MLflow registry: runs, model versions and the aliases that name the roles.

Aliases (never the deprecated stages): ``champion`` serves production, ``previous`` is the
champion it replaced (the rollback target), ``challenger`` marks a registered candidate that
did not win. Registration is idempotent: a model package is identified by the hash of its
files, and registering the same package twice returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autokfp.config import mask_url_password
from autokfp.errors import ModelRefError, RegistryError
from autokfp.settings import Settings

log = logging.getLogger(__name__)

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
PACKAGE_HASH_TAG = "autokfp.package_sha256"
# a version is created with state "registering" and marked "complete" only after its tags,
# metrics and aliases are set: a crash in between leaves a version that lists as incomplete
# and that the next registration of the same package removes and redoes
STATE_TAG, REGISTERING, COMPLETE = "autokfp.state", "registering", "complete"


def configure(settings: Settings | None = None) -> Any:
    """Point MLflow at the configured tracking/registry store and return a client."""
    import mlflow
    from mlflow import MlflowClient

    from autokfp.modeling.registry_store import open_store

    settings = settings or Settings.from_env()
    if settings.tracking_uri.startswith("sqlite:///"):
        settings.ensure_local_dirs()
        open_store(settings)  # never let MLflow write a new schema over a damaged file
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_id(client: Any, model_name: str, settings: Settings | None = None) -> str:
    """The experiment ``autokfp/<model_name>``, created with the shared artifact location.

    Raises:
        RegistryError: the registry is a server but the experiment keeps its artifacts in a
            folder of one machine (an older run wrote it), so no other pod could read them.
    """
    from autokfp.settings import is_local_location

    settings = settings or Settings.from_env()
    name = f"autokfp/{model_name}"
    existing = client.get_experiment_by_name(name)
    if existing is None:
        root = settings.mlflow_artifact_root
        location = None if root is None else root.rstrip("/") + f"/{model_name}"
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:  # noqa: BLE001 - a concurrent run may have created it first
            existing = client.get_experiment_by_name(name)
            if existing is None:
                raise
    if settings.shared_registry and is_local_location(existing.artifact_location):
        raise RegistryError(
            f"MLflow experiment '{name}' on {mask_url_password(settings.tracking_uri)} keeps "
            "its artifacts in "
            f"'{existing.artifact_location}', a folder on one machine: other pods and KServe "
            "would find no model there. Set AUTOKFP_MLFLOW_ARTIFACT_ROOT (ConfigMap "
            "autokfp-config) to a gs:// or s3:// prefix, then rename or delete that "
            "experiment (mlflow experiments rename/delete) so it is created again there."
        )
    return existing.experiment_id


def serving_uri(client: Any, name: str, version: str, settings: Settings | None = None) -> str:
    """A ``gs://`` or ``s3://`` URI holding the model files of ``name`` v``version`` that
    KServe's storage initializer can fetch.

    A version whose artifacts already sit in an object store is served from there. One
    stored behind the MLflow server's proxy (``mlflow-artifacts:/``, which no storage
    initializer reads) is copied once to ``<AUTOKFP_ARTIFACT_ROOT>/models/<name>/<version>``;
    ``MLmodel`` is written last, so a copy cut short is redone rather than served. Without
    a remote artifact store (local runs) the registry's own location is returned.
    """
    import tempfile

    import mlflow.artifacts

    from autokfp import storage
    from autokfp.settings import is_local_location

    settings = settings or Settings.from_env()
    source = client.get_model_version_download_uri(name, version)
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("gs", "s3", "minio"):
        return storage.fetchable_uri(source)
    if is_local_location(settings.artifact_root):
        return source
    target = storage.join(settings.artifact_root, "models", name, str(version))
    if storage.exists(storage.join(target, "MLmodel")):
        return storage.fetchable_uri(target)
    with tempfile.TemporaryDirectory(prefix="autokfp-serving-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                         dst_path=tmp))
        if not (local / "MLmodel").is_file():
            raise RegistryError(
                f"{name} v{version}: the registry returned no model files from '{source}'; "
                "check that the MLflow server serves artifacts (--serve-artifacts) and that "
                "its --artifacts-destination is reachable")
        marker = (local / "MLmodel").read_bytes()
        (local / "MLmodel").unlink()
        storage.upload_dir(local, target, overwrite=True)
        storage.write_bytes(storage.join(target, "MLmodel"), marker)
    log.info("%s v%s copied from %s to %s for serving", name, version, source, target)
    return storage.fetchable_uri(target)


def package_hash(model_dir: str | Path) -> str:
    """sha256 over every file of a model package (names and bytes)."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    aliases: list[str]
    promoted: bool
    decision: str
    source: str
    reused: bool = False
    replaced_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def champion_version(client: Any, name: str) -> Any | None:
    """The model version holding alias ``champion``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_model(
    model_dir: str | Path,
    name: str,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    promote: bool,
    decision: str,
    compared_champion: str | None,
    artifacts: dict[str, str | Path] | None = None,
    settings: Settings | None = None,
) -> RegisteredVersion:
    """Log a run for the package, register it, and set aliases as decided.

    ``compared_champion`` is the champion version the decision was made against; if the
    champion changed since (a concurrent run promoted another), this one is not promoted.
    """
    import mlflow

    settings = settings or Settings.from_env()
    client = configure(settings)
    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").exists():
        raise RegistryError(f"{model_dir} is not an MLflow model folder (no MLmodel file); nothing registered")
    digest = package_hash(model_dir)
    existing = _version_with_hash(client, name, digest)
    if existing is not None and existing.tags.get(STATE_TAG) == REGISTERING:
        log.warning("%s v%s was left half-registered by an interrupted run: removing it and "
                    "registering the package again", name, existing.version)
        _remove_half_registered(client, name, str(existing.version))
        existing = None
    if existing is not None:
        log.info("package already registered as %s v%s: reusing it", name, existing.version)
        # search results carry no aliases; only a direct lookup does
        existing = client.get_model_version(name, existing.version)
        return RegisteredVersion(name=name, version=str(existing.version), run_id=existing.run_id,
                                 aliases=list(existing.aliases), promoted=CHAMPION in existing.aliases,
                                 decision="already registered (rerun)", source=existing.source, reused=True)

    current = champion_version(client, name)
    current_version = None if current is None else str(current.version)
    if promote and current_version != compared_champion:
        promote = False
        decision = (f"not promoted: the champion changed from v{compared_champion} to v{current_version} "
                    "while this model was evaluated; rerun to compare against the new champion")

    exp = experiment_id(client, name, settings)
    with mlflow.start_run(experiment_id=exp, run_name=f"{name}-{digest[:8]}") as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
        mlflow.set_tags({**tags, PACKAGE_HASH_TAG: digest, "autokfp.decision": decision})
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        for artifact_name, path in (artifacts or {}).items():
            if Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path=artifact_name)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name,
                                    tags={PACKAGE_HASH_TAG: digest, STATE_TAG: REGISTERING})
    for key, value in {**{k: str(v) for k, v in tags.items()}, "decision": decision}.items():
        client.set_model_version_tag(name, version.version, key, value[:5000])
    for key, value in metrics.items():
        if _finite(value):
            client.set_model_version_tag(name, version.version, f"metric.{key}", f"{float(value):.6g}")

    aliases: list[str] = []
    if promote:
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current.version)
        client.set_registered_model_alias(name, CHAMPION, version.version)
        aliases.append(CHAMPION)
    else:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        aliases.append(CHALLENGER)
    client.set_model_version_tag(name, version.version, STATE_TAG, COMPLETE)
    log.info("registered %s v%s (%s): %s", name, version.version, ",".join(aliases), decision)
    return RegisteredVersion(name=name, version=str(version.version), run_id=run.info.run_id,
                             aliases=aliases, promoted=promote, decision=decision,
                             source=client.get_model_version_download_uri(name, version.version),
                             replaced_version=current_version if promote else None,
                             metrics={k: float(v) for k, v in metrics.items() if _finite(v)})


def _remove_half_registered(client: Any, name: str, version: str) -> None:
    """Delete a version an interrupted registration left, and undo its champion move.

    A registration moves ``previous`` to the old champion, then ``champion`` to the new
    version, then marks the version complete. Killed in between, the half-registered
    version holds ``champion``; deleting it would leave no champion, and the rerun's
    decision (made against the old champion) would then no longer apply. So ``champion``
    goes back to ``previous`` first, as before the interrupted run.
    """
    from mlflow.exceptions import MlflowException

    aliases = client.get_model_version(name, version).aliases or []
    if CHAMPION in aliases:
        try:
            before = client.get_model_version_by_alias(name, PREVIOUS)
        except MlflowException:
            before = None
        if before is not None and str(before.version) != version:
            client.set_registered_model_alias(name, CHAMPION, before.version)
            log.warning("%s: champion moved back to v%s, which it was before the interrupted "
                        "registration of v%s", name, before.version, version)
    client.delete_model_version(name, version)


def _version_with_hash(client: Any, name: str, digest: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{PACKAGE_HASH_TAG}` = '{digest}'")
    except MlflowException:
        return None
    return found[0] if found else None


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every registered model with its versions, aliases and test metrics."""
    client = configure(settings)
    result = []
    for model in client.search_registered_models():
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        versions = []
        for mv in client.search_model_versions(f"name = '{model.name}'"):
            metrics = {k[len("metric."):]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
            versions.append({
                "version": str(mv.version),
                "aliases": sorted(aliases_by_version.get(str(mv.version), [])),
                "created": mv.creation_timestamp,
                "run_id": mv.run_id,
                "source": mv.source,
                "engine": mv.tags.get("engine"),
                "dataset": mv.tags.get("dataset"),
                "decision": mv.tags.get("decision"),
                "primary_metric": mv.tags.get("primary_metric"),
                "metrics": metrics,
                # versions from before the state tag are complete
                "state": "incomplete" if mv.tags.get(STATE_TAG) == REGISTERING else COMPLETE,
            })
        versions.sort(key=lambda v: int(v["version"]), reverse=True)
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        result.append({"name": model.name, "aliases": aliases, "versions": versions})
    result.sort(key=lambda m: m["name"])
    return result


def _finite(value: Any) -> bool:
    try:
        return value is not None and float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def model_uri(name: str, alias: str = CHAMPION) -> str:
    return f"models:/{name}@{alias}"


def tracking_env() -> dict[str, str]:
    """The MLflow settings a subprocess needs (no secrets beyond what the env already holds)."""
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


@dataclass(frozen=True)
class ModelRef:
    """A registered model named by an alias (``NAME@ALIAS``) or by a version
    (``NAME/VERSION``): what ``parse_model_ref`` returns. Exactly one of ``alias`` and
    ``version`` is set; ``str()`` gives it back in its written form."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" if self.version else f"{self.name}@{self.alias}"

    @property
    def uri(self) -> str:
        """The ``models:/`` URI MLflow loads (``models:/NAME@ALIAS`` or ``models:/NAME/V``)."""
        return f"models:/{self}"


MODEL_REF_FORMS = ("NAME@ALIAS (e.g. churn@champion), NAME/VERSION (e.g. churn/3) or NAME "
                   "(its champion)")
_ALIAS_CHARACTERS = re.compile(r"^[\w-]+$")  # what MLflow accepts in an alias


def parse_model_ref(ref: str, what: str = "model") -> ModelRef:
    """The one reading of a registered model's reference: ``NAME@ALIAS``, ``NAME/VERSION``
    (a number) or ``NAME`` (its ``champion``), surrounding spaces ignored. Used by
    ``load_model``, ``autokfp serve`` and batch scoring (its component, pipeline and
    ``autokfp score``); resolving it against a registry is the caller's.

    Raises:
        ModelRefError: the reference is empty or malformed; the message names ``what`` (the
            option or parameter it came from), the part that is wrong, and the forms to use.
    """
    text = (ref or "").strip()
    name, alias, version = text, CHAMPION, None
    if "@" in text:
        name, _, alias = text.partition("@")
    elif "/" in text:
        name, _, version = text.partition("/")
    problem = None
    if not text:
        problem = "it is empty"
    elif not name:
        problem = "the model name before '@' or '/' is missing"
    elif any(c.isspace() or c in "@/" for c in name):
        problem = f"the model name '{name}' holds a space, '@' or '/'"
    elif version == "":
        problem = "the version after '/' is missing"
    elif version is not None and not (version.isascii() and version.isdigit()):  # '²': isdigit, not int()
        problem = (f"the version after '/' must be a number, not '{version}'"
                   + (f" (write {name}/{version[1:]})"
                      if version[:1] in "vV" and version[1:].isdigit() else ""))
    elif version is None and not alias:
        problem = "the alias after '@' is missing"
    elif version is None and not _ALIAS_CHARACTERS.match(alias):
        problem = (f"the alias '{alias}' may hold only letters, digits, '_' and '-'")
    elif version is None and alias[:1] in "vV" and alias[1:].isdigit():
        problem = f"'@{alias}' names no alias: for version {alias[1:]} write {name}/{alias[1:]}"
    if problem:
        raise ModelRefError(f"{what} '{ref}': {problem}; write {MODEL_REF_FORMS}. "
                            "`autokfp models` lists the registered names, versions and aliases")
    if version is not None:
        return ModelRef(name, version=str(int(version)))
    return ModelRef(name, alias=alias)


def load_model(ref: str = "", settings: Settings | None = None) -> Any:
    """A registered model as an MLflow pyfunc, from the registry autokfp runs use.

    ``ref`` is ``NAME@ALIAS`` or ``NAME/VERSION`` (``NAME`` alone: its champion). The
    registry is ``MLFLOW_TRACKING_URI`` when set, else ``$AUTOKFP_HOME``'s (default
    ``./.autokfp``): what ``mlflow.pyfunc.load_model("models:/NAME@champion")`` alone cannot
    find in a new Python session (MLflow then opens, and creates, ``./mlflow.db``). A local
    registry that does not exist is an error, never created here.
    """
    import mlflow.pyfunc

    settings = settings or Settings.from_env()
    ref_ = parse_model_ref(ref)
    if settings.tracking_uri.startswith("sqlite:///"):
        database = Path(settings.tracking_uri[len("sqlite:///"):])
        if not database.is_file():
            raise RegistryError(
                f"no model registry at {database}: run `autokfp demo` or `autokfp run CONFIG` "
                "first, or set AUTOKFP_HOME (or MLFLOW_TRACKING_URI) to the registry the run "
                "printed ('Registry  :')")
    client = configure(settings)
    if ref_.alias is not None:
        try:
            client.get_model_version_by_alias(ref_.name, ref_.alias)
        except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception types
            raise RegistryError(f"model '{ref_}' is not in the registry "
                                f"{mask_url_password(settings.tracking_uri)}: `autokfp models` "
                                "lists what is registered") from exc
    return mlflow.pyfunc.load_model(ref_.uri)
