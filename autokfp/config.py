"""The run configuration: one YAML file, validated once, at the edge.

Example (the demo writes one like it)::

    name: churn
    sources:
      - {name: files, kind: folder, path: data/files, include: ["*.parquet", "*.csv"]}
      - {name: warehouse, kind: sql, url: "sqlite:///data/warehouse.db"}
    training:
      dataset: warehouse/customers     # <source name>/<table or relative file path>
      target: churned
    budget: {max_runtime_secs: 60}
    engines:                           # each engine's own settings (all optional)
      h2o: {nfolds: 5}
      autokeras: {max_trials: 5}

Every setting has a default except ``name``, ``sources`` and ``training``. Unknown keys are
rejected (a typo must not be silently ignored), and each bad field is reported with its
dotted path and what is allowed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from autokfp.errors import ConfigError

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class _CatalogNaming(_Strict):
    """How DataHub names a source's datasets: ``platform_instance`` and ``env`` go into every
    dataset URN exactly as DataHub's own source for the platform puts them, so autokfp's
    datasets join a catalog that DataHub's ingestion already filled."""

    platform_instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    env: str = Field(default="PROD", pattern=r"^[A-Z0-9_]+$")


class FolderSource(_CatalogNaming):
    """A local folder of CSV / Parquet / JSON-lines files (searched recursively)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["folder"]
    path: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)


class GcsSource(_CatalogNaming):
    """Files under a ``gs://bucket/prefix``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["gcs"]
    uri: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _gs_uri(cls, value: str) -> str:
        if not value.startswith("gs://") or len(value) <= len("gs://"):
            raise ValueError("must look like gs://bucket or gs://bucket/prefix")
        return value.rstrip("/")


class S3Source(_CatalogNaming):
    """Files under an ``s3://bucket/prefix`` (AWS S3), or ``minio://bucket/prefix`` for MinIO
    and other S3-compatible stores at ``AWS_ENDPOINT_URL``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["s3"]
    uri: str
    include: list[str] = Field(default_factory=lambda: ["*.csv", "*.parquet", "*.jsonl"])
    exclude: list[str] = Field(default_factory=list)

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in ("s3", "minio") or not rest.strip("/"):
            raise ValueError("must look like s3://bucket/prefix (or minio://bucket/prefix)")
        return value.rstrip("/")


class SqlSource(_CatalogNaming):
    """A database reached through a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``).

    Put passwords in an environment variable and reference it as ``${VAR}`` in the URL; the
    expanded value is never written to logs, artifacts or compiled pipelines.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["sql"]
    url: str
    tables: list[str] | None = None
    schema_name: str | None = Field(default=None, alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///path/to.db")
        return value

    @model_validator(mode="after")
    def _no_literal_password(self) -> SqlSource:
        """A literal password never stays in the config, which travels everywhere (every
        task's command line and log, compiled run parameters, the model card, MLflow): it
        moves to an environment variable of this process (local tasks inherit it) and the
        url references that variable instead."""
        url, moved = move_literal_passwords(self.url, password_env_name(self.name))
        if moved:
            self.url = url
            log.warning(
                "source '%s': its url holds a literal password; it was moved to the "
                "environment variable %s of this process (local tasks inherit it) and the url "
                "now reads %s. Never write a password in a config: set an environment variable "
                "(in a cluster, from a Kubernetes Secret) and write ${VAR} in the url.",
                self.name, " and ".join(moved), url)
        return self


Source = Annotated[FolderSource | GcsSource | S3Source | SqlSource, Field(discriminator="kind")]


H2O_CLUSTER_URL_ENV = "AUTOKFP_H2O_CLUSTER_URL"
H2O_IMPORT_ROOT_ENV = "AUTOKFP_H2O_IMPORT_ROOT"


class H2OClusterSpec(_Strict):
    """``training.h2o_cluster``: train on a running (multi-node) H2O cluster.

    The H2O engine then connects with ``h2o.connect`` instead of starting a JVM in its pod,
    writes the training frame as Parquet under ``import_root`` and has the cluster import it
    from there (every node reads its share), so the frame never travels through the client.
    In a cluster the ConfigMap keys ``AUTOKFP_H2O_CLUSTER_URL`` and
    ``AUTOKFP_H2O_IMPORT_ROOT`` give the same settings (``resolved_h2o_cluster``).
    """

    url: str = Field(description="the cluster's REST address, e.g. "
                                 "http://h2o.autokfp.svc.cluster.local:54321")
    import_root: str | None = Field(
        default=None,
        description="where the training frame is written for the cluster to import: a folder "
                    "every H2O node sees, gs:// or s3:// (the nodes need read access); "
                    "default: <AUTOKFP_ARTIFACT_ROOT>/h2o-import")
    connect_timeout_secs: float = Field(default=30.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlparse

        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("must be the cluster's http(s):// REST address with its port, e.g. "
                             "http://h2o.autokfp.svc.cluster.local:54321")
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"has a bad port: {exc}") from None
        return value.rstrip("/")


def resolved_h2o_cluster(spec: H2OClusterSpec | None) -> H2OClusterSpec | None:
    """``training.h2o_cluster``, or the ConfigMap's ``AUTOKFP_H2O_CLUSTER_URL`` when unset."""
    import os

    if spec is not None:
        return spec
    url = os.environ.get(H2O_CLUSTER_URL_ENV, "").strip()
    if not url:
        return None
    try:
        return H2OClusterSpec(url=url,
                              import_root=os.environ.get(H2O_IMPORT_ROOT_ENV, "").strip() or None)
    except ValueError as exc:
        raise ConfigError(f"{H2O_CLUSTER_URL_ENV}={url!r} (ConfigMap autokfp-config): {exc}") \
            from None


class TrainingSpec(_Strict):
    dataset: str = Field(description="<source name>/<table name or file path relative to the source>")
    target: str
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    id_column: str | None = None
    positive_class: str | None = None
    calibration: Literal["auto", "none"] = Field(
        default="auto",
        description="classifiers: auto fits Platt (binary) or temperature (multiclass) scaling "
                    "on the engine's out-of-sample training predictions and keeps it in the "
                    "model when it lowers the cross-fitted log loss; none: the engine's "
                    "probabilities as they are")
    h2o_cluster: H2OClusterSpec | None = Field(
        default=None,
        description="train H2O on this running cluster ({url: http://host:54321}) instead of "
                    "a JVM in the training pod; the ConfigMap key AUTOKFP_H2O_CLUSTER_URL "
                    "does the same")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError("must be '<source name>/<table or file>', e.g. warehouse/customers")
        return value


class SplitSpec(_Strict):
    test_fraction: float = Field(default=0.2, gt=0.05, lt=0.5)
    seed: int = 42


class BudgetSpec(_Strict):
    """What every engine gets: time, seed and threads (engine knobs live under ``engines``)."""

    max_runtime_secs: int = Field(
        default=120, ge=10, le=86_400,
        description="each engine's search time (engines run side by side in the cluster); "
                    "H2O's JVM start and model export come on top")
    seed: int = 1
    nthreads: int = Field(default=-1, ge=-1, description="CPU threads per engine (-1: all)")
    max_features: int | None = Field(
        default=None, ge=1,
        description="keep at most this many engineered features, the most important first")


class FeatureSpec(_Strict):
    drop_pii: bool = True
    drop_columns: list[str] = Field(default_factory=list)
    leakage_threshold: float = Field(
        default=0.97, gt=0.5, le=1.0,
        description="a column whose AUC (or |corr| for regression) alone reaches this is dropped as a leak",
    )
    max_text_tokens: int = Field(default=20, ge=0, le=500)
    datetime_parts: list[Literal["year", "month", "day", "dayofweek", "hour", "age_days"]] = Field(
        default_factory=lambda: ["year", "month", "dayofweek", "age_days"]
    )


class QualitySpec(_Strict):
    min_rows: int = Field(default=100, ge=10)
    max_missing_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    fail_on_missing_fraction: float = Field(default=0.95, ge=0.0, le=1.0)
    max_target_missing_fraction: float = Field(default=0.0, ge=0.0, le=0.5)
    min_class_count: int = Field(default=10, ge=1)
    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description="column -> [min, max] (either may be null) or {min: .., max: ..} (either "
                    "may be left out); values outside fail the gate",
    )
    allowed_categories: dict[str, list[str]] = Field(
        default_factory=dict,
        description="column -> the values it may hold; any other value fails the gate",
    )
    max_out_of_policy_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="share of rows allowed outside ranges / allowed_categories before failing "
                    "(below it the check warns)",
    )
    summary_max_columns: int = Field(
        default=50, ge=1, le=2000,
        description="columns in Evidently's data summary (the target first, then file order); "
                    "the page names the ones left out. Evidently costs ~0.2 s per column here",
    )
    summary_max_rows: int = Field(
        default=50_000, ge=100,
        description="rows in Evidently's data summary (a fixed-seed uniform sample above it)",
    )
    summary_time_limit_secs: float = Field(
        default=120.0, gt=0, le=3600,
        description="Evidently's data summary is stopped after this long and the page says so "
                    "(it never holds up the quality gate)",
    )


    @field_validator("ranges", mode="before")
    @classmethod
    def _ranges_from_mappings(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        bounds = {}
        for column, bound in value.items():
            if isinstance(bound, dict):
                unknown = sorted(set(bound) - {"min", "max"})
                if unknown:
                    raise ValueError(f"the range of '{column}' has unknown key(s) {unknown}; "
                                     "give min and/or max")
                bound = (bound.get("min"), bound.get("max"))
            bounds[column] = bound
        return bounds

    @field_serializer("ranges")
    def _ranges_as_mappings(self, ranges: dict[str, tuple[float | None, float | None]]
                            ) -> dict[str, dict[str, float]]:
        # {min, max} without the open side: KFP pipeline parameters cannot hold a null
        return {column: {key: bound for key, bound in (("min", low), ("max", high))
                         if bound is not None}
                for column, (low, high) in ranges.items()}

class SelectionSpec(_Strict):
    primary_metric: Literal["auto", "auc", "logloss", "accuracy", "f1", "rmse", "mae", "r2"] = "auto"
    min_improvement: float = Field(default=0.0, ge=0.0)
    confidence: float = Field(
        default=0.9, ge=0.5, lt=1.0,
        description="paired-bootstrap probability that the challenger is better, required to replace a champion",
    )
    bootstrap_samples: int = Field(default=500, ge=50, le=10_000)
    baseline_margin: float = Field(
        default=0.02, ge=0.0, le=0.5,
        description="a first model (no champion yet) must beat the trivial baseline (the class "
                    "prior, or the mean) on the held-out rows by this much in the primary "
                    "metric (points of auc/accuracy/f1/r2; a fraction of the baseline's "
                    "logloss/rmse/mae), with `confidence`, or it is not made champion",
    )
    feature_selection: Literal["importance", "off"] = Field(
        default="importance",
        description="importance: drop features that a quick model finds useless (permutation "
                    "importance <= 0 on held-back training rows) and cap at budget.max_features",
    )


class DeploySpec(_Strict):
    namespace: str | None = Field(
        default=None,
        description="where the InferenceService goes; default: the run's own namespace (the "
                    "pod's, or the kubeconfig context's outside a cluster)")
    service_account: str = "autokfp-serving"
    canary_traffic_percent: int = Field(default=10, ge=0, le=100)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=3, ge=1)
    cpu: str = "1"
    memory: str = "2Gi"
    target: Literal["auto", "kubernetes", "local", "manifest"] = Field(
        default="auto",
        description="kubernetes: apply through the Kubernetes API; local: start the predictor on "
                    "this machine and verify it; manifest: only write the InferenceService; "
                    "auto: kubernetes inside a cluster, else local",
    )
    mode: Literal["auto", "serverless", "standard"] = Field(
        default="auto",
        description="KServe deployment mode (target kubernetes). serverless: Knative revisions, "
                    "a canary verified on its own tagged route then promoted; standard: "
                    "RawDeployment, a blue-green switch (a candidate InferenceService verified "
                    "before the serving one is switched); auto: serverless when the cluster "
                    "serves Knative, else standard")
    token_env: str | None = Field(
        default=None,
        description="environment variable holding a bearer token sent with smoke-test requests "
                    "(Istio/Kubeflow profile namespaces answer 403 without one; see "
                    "manifests/serving/authorization-policy.yaml)")
    strategy: Literal["canary", "ab", "shadow"] = Field(
        default="canary",
        description="how a version that replaces a serving one is rolled out (serverless mode). "
                    "canary: the new revision gets canary_traffic_percent while it is verified on "
                    "its own route, then 100 %. ab: after the same verification the split is kept "
                    "at ab_percent for ab_minutes (users are answered by both versions; the step "
                    "samples the split and watches the new revision), then the new revision is "
                    "verified alone again and promoted, or rolled back to 0 %. shadow: before any "
                    "user traffic, for shadow_minutes the live requests the prediction log "
                    "captures are replayed to the new revision (0 % of traffic) and its answers "
                    "compared with what users got; then the canary as usual")
    ab_percent: int = Field(default=50, ge=1, le=99,
                            description="share of traffic the new version gets in an A/B split")
    ab_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60,
                              description="how long an A/B split is kept before the decision")
    shadow_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60,
                                  description="how long live traffic is mirrored to a shadow")
    payload_log: Literal["kserve", "predictor", "off"] = Field(
        default="kserve",
        description="how requests are captured for monitoring (target kubernetes). kserve: "
                    "KServe's payload logger (spec.predictor.logger, mode all) posts each request "
                    "and response as CloudEvents to the receiver (manifests/serving/"
                    "payload-log.yaml), which writes the prediction log, so serving pods need no "
                    "write access to the store; predictor: the predictor writes it itself; off: "
                    "nothing is captured. A local predictor always logs itself")
    payload_log_url: str | None = Field(
        default=None,
        description="the payload-log receiver's URL; default http://autokfp-payload-log."
                    "<namespace>.svc.cluster.local/v1/models/payload-log:predict")
    verify: bool = True
    smoke_rows: int = Field(default=50, ge=1, le=10_000)
    latency_budget_ms: float = Field(default=100.0, gt=0)
    ready_timeout_secs: int = Field(default=300, ge=10)
    keep_local_server: bool = Field(
        default=False, description="leave the verified local predictor running after the deploy step")
    local_port: int = Field(default=8080, ge=1024, le=65535)

    def target_namespace(self) -> str:
        """``namespace`` when set, else the namespace this run executes in."""
        from autokfp.settings import run_namespace

        return self.namespace or run_namespace()

    @model_validator(mode="after")
    def _replicas(self) -> DeploySpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class GovernanceSpec(_Strict):
    """Fairness policy, explanations and human oversight (see docs/governance.md)."""

    sensitive_columns: list[str] = Field(
        default_factory=list,
        description="protected attributes to check; empty: the columns the catalog tagged 'sensitive'")
    max_demographic_parity_difference: float = Field(default=0.1, ge=0.0, le=1.0)
    min_demographic_parity_ratio: float = Field(default=0.8, ge=0.0, le=1.0)
    max_equalized_odds_difference: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="limit on the larger of the TPR and FPR gaps between groups; unset: reported only")
    # at 100 rows a selection rate's standard error is about 0.045, half the default parity
    # limit: smaller groups cannot be told apart from noise, so they are reported, not judged
    min_group_size: int = Field(
        default=100, ge=1, description="a group with fewer held-out rows is reported as too small to measure")
    ranking_parity: bool = Field(
        default=True, description="also hold the ranking to the parity limits: the groups' rates "
                                  "when the top-scored share equal to the training positive rate "
                                  "is flagged, not only the decisions at the threshold")
    mitigate: bool = Field(
        default=True, description="repair scores / fit per-group thresholds when a limit is broken")
    block_deploy_on_bias: bool = Field(
        default=True, description="stop the run (nothing registered or deployed) if a limit stays broken")
    require_approval: bool = Field(
        default=False, description="a person must run 'autokfp approve MODEL VERSION' before production")
    explain_rows: int = Field(default=300, ge=20, le=100_000,
                              description="held-out rows used for permutation importance")
    shap_rows: int = Field(default=20, ge=0, le=1_000,
                           description="rows explained with Kernel SHAP (0: skip SHAP)")
    intended_use: str | None = Field(default=None, description="the model card's intended-use statement")


CRON_PATTERN = r"^\S+( \S+){5}$"


class LabelSpec(_Strict):
    """Where the ground truth of served predictions arrives (joined to them by id)."""

    path: str | None = Field(
        default=None,
        description="a CSV/Parquet file or a folder of them (local or gs://); relative to the "
                    "config file")
    id_column: str | None = Field(default=None, description="default: training.id_column")
    target: str | None = Field(default=None, description="default: training.target")


class MonitoringSpec(_Strict):
    """The drift-monitoring pipeline: what it reads, and when it retrains."""

    window_days: float = Field(
        default=7.0, gt=0, le=366, description="compare the predictions logged in the last N days")
    min_window_rows: int = Field(
        default=200, ge=1, description="fewer rows in the window: no drift verdict, no retraining")
    reference: Literal["auto", "stored", "training-data"] = Field(
        default="auto",
        description="stored: the sample kept for the champion; training-data: the champion's "
                    "training dataset (registry tag), only while unchanged since registration; "
                    "auto: stored, else training-data (and keep it as the stored sample)")
    reference_rows: int = Field(default=50_000, ge=100, le=5_000_000)
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="retrain when at least this share of features drifted")
    prediction_drift_triggers: bool = Field(
        default=False, description="also retrain when only the prediction distribution drifted")
    performance_drop: float = Field(
        default=0.05, gt=0, le=1,
        description="retrain when the live primary metric is worse than the champion's test "
                    "metric by this fraction of it")
    min_labelled_rows: int = Field(
        default=100, ge=10, description="fewer labelled rows: no performance verdict")
    min_new_rows: int | None = Field(
        default=50_000, ge=1,
        description="retrain when this many labelled rows arrived for the champion (null: never)")
    retrain_every_days: float | None = Field(
        default=None, gt=0,
        description="retrain when the champion is older than this (null: never)")
    max_bad_input_fraction: float = Field(
        default=0.2, ge=0, le=1,
        description="live inputs with more rows failing checks than this are not used to retrain")
    schedule: str = Field(default="0 0 */6 * * *", pattern=CRON_PATTERN,
                          description="recurring-run cron, 6 fields with seconds first")
    labels: LabelSpec = Field(default_factory=LabelSpec)
    metrics_url: str | None = Field(
        default=None,
        description="Prometheus text endpoint (or file) of the predictor: latency and "
                    "error-rate histories")
    season: Literal["none", "daily", "weekly"] = Field(
        default="daily", description="seasonality the anomaly detector expects in the histories")
    anomaly_threshold: float = Field(default=4.0, gt=0, description="robust z-score of an anomaly")


def _default_engines() -> dict[str, Any]:
    from autokfp.engine_registry import default_engines

    return {name: {} for name in default_engines()}


def _validate_engine_settings(name: str, settings: Any) -> Any:
    """``engines.<name>`` -> that engine's own settings model (the engine module owns it)."""
    # The one place the config reaches into the training capability: engines are plug-ins
    # and bring their settings models with them.
    from autokfp.engine_registry import engine_spec

    try:
        spec = engine_spec(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(settings, spec.settings):
        return settings
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ValueError(f"engines.{name} must be a mapping of {spec.title} settings, got "
                         f"{type(settings).__name__}")
    try:
        return spec.settings.model_validate(settings)
    except ValidationError as exc:
        allowed = ", ".join(spec.settings.model_fields)
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in (name, *error["loc"]))
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown setting (allowed here: {allowed})")
            else:
                problems.append(f"{where}: {error['msg']}")
        raise ValueError("; ".join(problems)) from None


def _engines_from_list(value: Any) -> Any:
    """``engines: [h2o, autokeras]`` -> each engine with its default settings."""
    if isinstance(value, (list, tuple)):
        repeated = sorted({str(v) for v in value if list(value).count(v) > 1})
        if repeated:
            raise ValueError(f"engines must not repeat an engine: {repeated}")
        return {name: {} for name in value}
    return value


def _move_legacy_engine_settings(data: Any) -> Any:
    """Accept the old layout: engine knobs in ``budget`` (``budget.nfolds``,
    ``budget.autokeras_epochs``, ...). Each moves to ``engines.<engine>.<setting>`` (each
    engine declares its old names), with a warning naming the new place; one set in both
    places is an error, and one of an engine that is not configured is dropped."""
    if not isinstance(data, dict) or not isinstance(data.get("budget"), dict):
        return data
    from autokfp.engine_registry import engine_specs

    legacy = {old: (spec.name, new) for spec in engine_specs().values()
              for old, new in spec.legacy_budget_keys.items()}
    found = [key for key in data["budget"] if key in legacy]
    if not found:
        return data
    data = dict(data)
    budget = dict(data["budget"])
    engines = data.get("engines")
    if engines is None:
        engines = _default_engines()
    if isinstance(engines, (list, tuple)):
        engines = {name: {} for name in engines}
    if not isinstance(engines, dict):
        return data  # the engines validator reports the bad value
    engines = {name: dict(settings) if isinstance(settings, dict) else settings
               for name, settings in engines.items()}
    for key in found:
        engine, setting = legacy[key]
        value = budget.pop(key)
        if engine not in engines:
            log.warning("budget.%s is ignored: it is a setting of the %s engine, which is not "
                        "among the configured engines %s", key, engine, list(engines))
            continue
        target = engines[engine]
        if not isinstance(target, dict):
            continue  # the engines validator reports the bad value
        if setting in target:
            raise ValueError(f"budget.{key} and engines.{engine}.{setting} are the same setting; "
                             f"keep only engines.{engine}.{setting}")
        target[setting] = value
        log.warning("budget.%s is deprecated: write it as engines.%s.%s", key, engine, setting)
    data["budget"] = budget
    data["engines"] = engines
    return data


class CatalogSpec(_Strict):
    """How discovery catalogs the sources.

    ``crawl`` (default): autokfp's own crawl, which names datasets as DataHub's sources do.
    ``datahub``: DataHub's own source plugins run recipes generated from ``sources`` (or the
    user's ``recipe``, a YAML file or URI with ``${VAR}`` secrets from the environment), and
    autokfp's aspects are added on top by its transformer (``autokfp.catalog.ingest``).
    """

    ingestion: Literal["crawl", "datahub"] = "crawl"
    recipe: str | None = None

    @model_validator(mode="after")
    def _recipe_needs_datahub(self) -> CatalogSpec:
        if self.recipe and self.ingestion != "datahub":
            raise ValueError("catalog.recipe is run by DataHub's ingestion: set "
                             "catalog.ingestion: datahub (or drop the recipe)")
        return self


class RunConfig(_Strict):
    """A complete, validated run configuration."""

    name: str = Field(pattern=NAME_PATTERN, description="model name in the registry (lowercase, digits, '-')")
    sources: list[Source] = Field(min_length=1)
    training: TrainingSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    engines: dict[str, Any] = Field(
        default_factory=_default_engines, min_length=1,
        description="the training engines whose leaders compete, each with its own settings "
                    "(engines.<name>: {...}; a list of names takes the defaults); the "
                    "pipeline trains one candidate per engine")
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)

    @model_validator(mode="after")
    def _dataset_names_a_source(self) -> RunConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        source = self.training.dataset.split("/", 1)[0]
        if source not in names:
            raise ValueError(
                f"training.dataset '{self.training.dataset}' names source '{source}', "
                f"but the sources are: {', '.join(names)}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _legacy_layout(cls, data: Any) -> Any:
        return _move_legacy_engine_settings(data)

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_list(cls, value: Any) -> Any:
        return _engines_from_list(value)

    @field_validator("engines")
    @classmethod
    def _engine_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {name: _validate_engine_settings(name, settings) for name, settings in value.items()}

    @field_serializer("engines")
    def _engines_as_mappings(self, engines: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: settings.model_dump(mode="json", exclude_none=True)
                for name, settings in engines.items()}

    def engine_names(self) -> list[str]:
        """The configured engines, in the config's order."""
        return list(self.engines)

    @property
    def model_name(self) -> str:
        return self.name

    def source(self, name: str) -> FolderSource | GcsSource | S3Source | SqlSource:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"no source named '{name}' in the config (have: {[s.name for s in self.sources]})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what pipelines receive as their ``config`` parameter)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def training_settings(self, engine: str | None = None) -> TrainingSettings:
        """The part of the config a training task reads (its cache key, and nothing else);
        with ``engine``, that engine's settings only."""
        engines = self.engines if engine is None else {engine: self.engines[engine]}
        return TrainingSettings(budget=self.budget, engines=engines,
                                primary_metric=self.selection.primary_metric,
                                calibration=self.training.calibration,
                                h2o_cluster=self.training.h2o_cluster)


class TrainingSettings(_Strict):
    """What a training task reads, and nothing else.

    Pipelines pass this to the GPU training tasks instead of the whole run config, so their
    cache key in the cluster changes only when something training reads changes (not, say,
    the deploy settings or ``require_approval``).
    """

    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    engines: dict[str, Any] = Field(default_factory=_default_engines, min_length=1)
    primary_metric: Literal["auto", "auc", "logloss", "accuracy", "f1", "rmse", "mae", "r2"] = "auto"
    calibration: Literal["auto", "none"] = "auto"
    h2o_cluster: H2OClusterSpec | None = None  # training.h2o_cluster

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_list(cls, value: Any) -> Any:
        return _engines_from_list(value)

    @field_validator("engines")
    @classmethod
    def _engine_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {name: _validate_engine_settings(name, settings) for name, settings in value.items()}

    @field_serializer("engines")
    def _engines_as_mappings(self, engines: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {name: settings.model_dump(mode="json", exclude_none=True)
                for name, settings in engines.items()}

    def engine_names(self) -> list[str]:
        return list(self.engines)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_training_settings(data: Any, origin: str = "training settings") -> TrainingSettings:
    """A training task's settings from a whole run config (dict or RunConfig) or from
    ``RunConfig.training_settings().to_dict()``; raise ConfigError listing every bad field."""
    if isinstance(data, TrainingSettings):
        return data
    if isinstance(data, str):
        # kfp.local 2.17 hands a task's dict output to a task inside a ParallelFor as its
        # JSON text (the cluster passes the STRUCT the spec declares)
        import json

        try:
            data = json.loads(data)
        except ValueError:
            raise ConfigError(f"{origin}: expected a mapping, got text that is not JSON") from None
    if isinstance(data, RunConfig):
        return data.training_settings()
    if isinstance(data, dict) and "sources" in data:
        return parse_config(data, origin=origin).training_settings()
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping, got {type(data).__name__}")
    try:
        return TrainingSettings.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, TrainingSettings) for e in exc.errors()[:MAX_LISTED_ERRORS]]
        listing = "\n  - ".join(line[:500] for line in lines)
        raise ConfigError(f"{origin} has {exc.error_count()} invalid setting(s):\n  - {listing}") from None


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not _is_union_tag(p))
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, error["loc"][:-1])
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"{loc}: unknown setting{hint}"
    if kind == "missing":
        return f"{loc}: required setting is missing"
    if kind == "union_tag_invalid":
        return f"{loc or 'sources[]'}.kind: must be one of 'folder', 'gcs', 's3', 'sql'"
    if kind == "union_tag_not_found":
        return f"{loc}: every source needs a kind: 'folder', 'gcs', 's3' or 'sql'"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{loc or '<top level>'}: {message}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"folder", "gcs", "s3", "sql"}


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    kinds = {"folder": FolderSource, "gcs": GcsSource, "s3": S3Source, "sql": SqlSource}
    for part in loc:
        if isinstance(part, int):
            continue
        if part in kinds:
            current = kinds[part]
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return []
        annotation = field.annotation
        candidate = getattr(annotation, "__args__", (annotation,))
        nested = [c for c in candidate if isinstance(c, type) and issubclass(c, BaseModel)]
        # list[Source] has no model directly; the union tag that follows picks it
        current = nested[0] if nested else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def parse_config(data: Any, origin: str = "config") -> RunConfig:
    """Validate a mapping into a RunConfig; raise ConfigError listing every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}")
    if len(data) > MAX_TOP_LEVEL_KEYS:
        raise ConfigError(f"{origin} has {len(data)} top-level settings; a run config has at most "
                          f"{MAX_TOP_LEVEL_KEYS} (name, sources, training, budget...): it is not a "
                          "run config, or was generated wrongly")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        count = exc.error_count()
        lines = [_describe(e, RunConfig) for e in exc.errors()[:MAX_LISTED_ERRORS]]
        if count > len(lines):
            lines.append(f"... and {count - len(lines)} more")
        listing = "\n  - ".join(line[:500] for line in lines)
        raise ConfigError(f"{origin} has {count} invalid setting(s):\n  - {listing}") from None


# Each pipeline task receives the whole config on its command line, and Linux caps one
# argument at 128 KiB (MAX_ARG_STRLEN); larger configs are refused here, before any step.
MAX_CONFIG_JSON_BYTES = 96 * 1024
MAX_CONFIG_FILE_BYTES = 1024 * 1024
MAX_TOP_LEVEL_KEYS = 100
MAX_LISTED_ERRORS = 20


def check_config_size(config: RunConfig, origin: str) -> None:
    """Refuse a config too large to travel to the pipeline's tasks, naming the largest parts."""
    import json

    data = config.to_dict()
    size = len(json.dumps(data, default=str).encode("utf-8"))
    if size <= MAX_CONFIG_JSON_BYTES:
        return
    parts = sorted(((len(json.dumps(v, default=str)), k) for k, v in data.items()), reverse=True)
    largest = ", ".join(f"{k} ({n // 1024} KiB)" for n, k in parts[:3])
    raise ConfigError(f"{origin} is {size // 1024} KiB as JSON; a run config can be at most "
                      f"{MAX_CONFIG_JSON_BYTES // 1024} KiB because every pipeline task receives "
                      f"it on its command line. The largest parts: {largest}. Shorten long texts "
                      "(e.g. governance intended use) or long lists (categories, ranges), or "
                      "keep them in a file the config points to")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _resolve_relative(config: RunConfig, base: Path) -> RunConfig:
    for source in config.sources:
        if isinstance(source, FolderSource) and not Path(source.path).is_absolute():
            source.path = str((base / source.path).resolve())
        if isinstance(source, SqlSource) and source.url.startswith("sqlite:///"):
            db_path = source.url[len("sqlite:///"):]
            # a path that starts with ${VAR} is the variable's business (expanded at use)
            if db_path and not db_path.startswith(("/", "${")) and db_path != ":memory:":
                source.url = "sqlite:///" + str((base / db_path).resolve())
    labels = config.monitoring.labels
    if labels.path and "://" not in labels.path and not Path(labels.path).is_absolute():
        labels.path = str((base / labels.path).resolve())
    return config


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a YAML run config. Relative paths are relative to the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML run config")
    size = path.stat().st_size
    if size > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"config file '{path}' is {size // 1024} KiB; a run config is at most "
                          f"{MAX_CONFIG_FILE_BYTES // 1024} KiB (its JSON form at most "
                          f"{MAX_CONFIG_JSON_BYTES // 1024} KiB): is it the right file?")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                          f"on line {line}); save it as UTF-8 (most editors: 'Save with "
                          "encoding')") from None
    if not text.strip():
        raise ConfigError(f"config file '{path}' is empty; see examples/churn.yaml for a complete one")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
    if data is None:  # only comments
        raise ConfigError(f"config file '{path}' is empty; see examples/churn.yaml for a complete one")
    config = parse_config(data, origin=str(path))
    check_config_size(config, f"config file '{path}'")
    return _resolve_relative(config, path.parent.resolve())


SQL_PASSWORD_ENV_PREFIX = "AUTOKFP_SQL_PASSWORD_"
# user:password@ as SQLAlchemy parses it (a username has no ':' or '/', a password no '@')
_URL_PASSWORD = re.compile(r"^(?P<head>[\w+.-]+://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$",
                           re.S)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<password>[^&]*)", re.I)


def password_env_name(source_name: str) -> str:
    """The environment variable a SQL source's literal password is moved to."""
    return SQL_PASSWORD_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", source_name).upper()


def _literal(password: str) -> bool:
    # a password written as (or with) ${VAR} already comes from the environment
    return bool(password) and not _ENV_REF.search(password)


def move_literal_passwords(url: str, env_name: str) -> tuple[str, list[str]]:
    """``url`` with each literal password (``user:PASSWORD@`` or ``?password=``) replaced by
    a ``${VAR}`` reference, its value put into ``os.environ``; returns the variables set.

    The value is kept as written (still URL-encoded), which is what ``expand_env`` puts back.
    """
    import os

    moved: list[str] = []
    match = _URL_PASSWORD.match(url)
    if match and _literal(match["password"]):
        os.environ[env_name] = match["password"]
        url = f"{match['head']}${{{env_name}}}{match['tail']}"
        moved.append(env_name)
    query_env = env_name + "_QUERY"

    def _query(found: re.Match[str]) -> str:
        if not _literal(found["password"]):
            return found[0]
        os.environ[query_env] = found["password"]
        moved.append(query_env)
        return f"{found['head']}${{{query_env}}}"

    if "?" in url:
        base, _, query = url.partition("?")
        url = base + _QUERY_PASSWORD.sub(_query, "?" + query)
    return url, moved


def mask_url_password(url: str) -> str:
    """``url`` safe to print: a literal password (``user:PASSWORD@``, ``?password=``) shows as
    ``***``; ``${VAR}`` references are kept (they name, not hold, the secret)."""
    match = _URL_PASSWORD.match(url)
    if match and _literal(match["password"]):
        url = f"{match['head']}***{match['tail']}"
    if "?" in url:
        base, _, query = url.partition("?")
        url = base + _QUERY_PASSWORD.sub(
            lambda m: m["head"] + ("***" if _literal(m["password"]) else m["password"]),
            "?" + query)
    return url


def expand_env(url: str) -> str:
    """Expand ``${VAR}`` references (for secrets) at the moment of use, never earlier."""

    def _sub(match: re.Match[str]) -> str:
        import os

        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} (referenced in a source URL) is not set")
        return os.environ[name]

    return _ENV_REF.sub(_sub, url)


# The run form: the typed parameters a pipeline shows in the Kubeflow UI next to ``config``.
# A parameter left at FROM_CONFIG keeps the config's value (or its default). Not "": KFP's UI
# reports a falsy default as "Missing parameter" (kubeflow/pipelines#11515).
FROM_CONFIG = "from config"
RUN_FORM_SOURCE = "run-form"
_URI_SOURCE_KINDS = {"gs": "gcs", "s3": "s3", "minio": "s3"}
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", FROM_CONFIG))


def _name_from(path: str) -> str:
    stem = path.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")[:50].strip("-")
    return name or "model"


def _dataset_source(dataset: str, taken: set[str]) -> tuple[dict[str, Any], str]:
    """A ``gs://``/``s3://``/``minio://`` object or a local file -> (a source that holds just
    that file, its ``<source>/<file>`` name)."""
    name = RUN_FORM_SOURCE
    while name in taken:
        name += "-1"
    scheme, _, rest = dataset.partition("://")
    if scheme.split("+", 1)[0].lower() in _SQL_SCHEMES:
        url, _, table = dataset.partition("#")
        if not table or "/" in table:
            raise ConfigError("a database dataset names its table after '#', e.g. "
                              "postgresql://user:${PG_PASSWORD}@db/crm#customers")
        return {"name": name, "kind": "sql", "url": url, "tables": [table]}, f"{name}/{table}"
    if scheme in _URI_SOURCE_KINDS:
        bucket_path = rest.strip("/")
        parent, _, file = bucket_path.rpartition("/")
        if not parent or not file:
            raise ConfigError(f"dataset '{dataset}': give the file, e.g. "
                              f"{scheme}://bucket/churn/customers.parquet")
        source = {"name": name, "kind": _URI_SOURCE_KINDS[scheme], "uri": f"{scheme}://{parent}",
                  "include": [file]}
        return source, f"{name}/{file}"
    if scheme == "file":
        dataset = rest
    path = Path(dataset)
    if not path.is_absolute():
        raise ConfigError(f"dataset '{dataset}' is neither <source>/<table or file> of the "
                          "config's sources, an absolute file path, a gs:// or s3:// URI, "
                          "<database URL>#<table>, nor a DataHub dataset URN (urn:li:dataset:...)")
    source = {"name": name, "kind": "folder", "path": str(path.parent), "include": [path.name]}
    return source, f"{name}/{path.name}"


def resolve_dataset(dataset: str, sources: Any) -> tuple[list[Any], str]:
    """``dataset`` as ``(sources, <source>/<table or file>)``: a dataset of one of ``sources``
    as it is, else a source holding just that file or table is added (see
    ``apply_run_form``)."""
    dataset = dataset.strip()
    listed = list(sources) if isinstance(sources, (list, tuple)) else []
    names = {s.get("name") if isinstance(s, dict) else getattr(s, "name", None) for s in listed}
    if dataset.split("/", 1)[0] in names and "://" not in dataset:
        return listed, dataset
    source, chosen = _dataset_source(dataset, names)
    return [*listed, source], chosen


def apply_run_form(config: dict[str, Any] | None, *, dataset: str = FROM_CONFIG,
                   target: str = FROM_CONFIG, task: str = FROM_CONFIG,
                   model_name: str = FROM_CONFIG, budget_seconds: int = -1,
                   engines: str = FROM_CONFIG, require_approval: bool = False,
                   origin: str = "run config") -> RunConfig:
    """The run config a pipeline run uses: ``config`` (the optional full override) with the
    run form's typed parameters on top, validated like a config file.

    ``dataset`` is ``<source>/<table or file>`` of the config's sources, an absolute path or a
    ``gs://``/``s3://``/``minio://`` URI of one file, or ``<database URL>#<table>`` (a source
    holding only that file or table is added). A DataHub dataset URN is looked up in the
    catalog before this is called (``autokfp.catalog.locations``, in the resolve_config step).
    ``engines`` is a comma-separated list of engine names. ``require_approval`` can only add
    the requirement: a config that requires approval keeps requiring it. ``model_name``
    defaults to the dataset's file or table name when neither sets it. Raises ConfigError
    naming every bad field, like ``autokfp run`` does for a config file.
    """
    data: dict[str, Any] = {key: value for key, value in (config or {}).items()}
    training = dict(data.get("training") or {}) if isinstance(data.get("training"), dict) \
        else data.get("training")
    if not _unset(dataset):
        data["sources"], chosen = resolve_dataset(dataset, data.get("sources"))
        training = training if isinstance(training, dict) else {}
        training["dataset"] = chosen
    for key, value in (("target", target), ("task", task)):
        if not _unset(value):
            training = training if isinstance(training, dict) else {}
            training[key] = value.strip()
    if training is not None:
        data["training"] = training
    if not _unset(model_name):
        data["name"] = model_name.strip()
    elif "name" not in data and isinstance(training, dict) and training.get("dataset"):
        data["name"] = _name_from(str(training["dataset"]).split("/", 1)[-1])
    if budget_seconds is not None and int(budget_seconds) != -1:
        budget = data.get("budget")
        data["budget"] = {**(budget if isinstance(budget, dict) else {}),
                          "max_runtime_secs": budget_seconds}
    if not _unset(engines):
        names = [name.strip() for name in engines.split(",") if name.strip()]
        current = data.get("engines")
        current = current if isinstance(current, dict) else {}
        # an engine named in the form keeps its settings from the config
        data["engines"] = {name: current.get(name) or {} for name in names}
    if require_approval:
        governance = data.get("governance")
        data["governance"] = {**(governance if isinstance(governance, dict) else {}),
                              "require_approval": True}
    if not data.get("sources") and not (isinstance(training, dict) and training.get("dataset")):
        raise ConfigError(f"{origin}: no dataset: give the run's dataset (a gs:// or s3:// URI, "
                          "<source>/<table> of the config's sources, or a DataHub URN) and its "
                          "target column, or a full config")
    parsed = parse_config(data, origin=origin)
    check_config_size(parsed, origin)
    return parsed
