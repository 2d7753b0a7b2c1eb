"""What training reads: the dataset and target, the split, the engine-neutral budget, features,
selection and the H2O cluster; ``TrainingSettings`` is the part a training task gets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from autokfp.config.base import _Strict
from autokfp.config.engines import WithEngines, _default_engines
from autokfp.errors import ConfigError

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
    refit_for_serving: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="after the champion gate passes, fit the chosen configuration again on "
                    "every labelled row (the fixed test rows too) and serve that model; the "
                    "gated model stays in the registered version for the next run's "
                    "comparison. auto: when the table has at most refit_max_rows labelled "
                    "rows, or the refit is estimated to take at most refit_max_secs")
    refit_max_rows: int = Field(
        default=10_000, ge=0,
        description="refit_for_serving: auto refits tables with at most this many labelled "
                    "rows (train + test); a larger one when its refit is estimated within "
                    "refit_max_secs")
    refit_max_secs: float = Field(
        default=600.0, ge=0.0,
        description="refit_for_serving: auto refits a table over refit_max_rows when the "
                    "refit (the child's and the engine's start, the fit on the training rows "
                    "for the held-out check, the fit on every labelled row, both checks) is "
                    "estimated to take at most this many seconds, from the chosen "
                    "configuration's own fit times in the search scaled to the rows; 0: "
                    "never above refit_max_rows")
    refit_score_tolerance: float = Field(
        default=0.02, ge=0.0, le=1.0,
        description="the refit's held-out check: the recipe fitted on the training rows is "
                    "rejected when, on the test rows, it is worse than the gated model by more "
                    "than the difference's standard error, kept between a tenth of this and "
                    "this (points of auc/accuracy/f1/r2), with selection.confidence (a paired "
                    "bootstrap)")
    refit_loss_tolerance: float = Field(
        default=0.10, ge=0.0, le=10.0,
        description="as refit_score_tolerance, for logloss/rmse/mae: a share of the gated "
                    "model's loss")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError("must be '<source name>/<table or file>', e.g. warehouse/customers")
        return value


class SplitSpec(_Strict):
    test_fraction: float = Field(default=0.2, gt=0.05, lt=0.5)
    seed: int = 42
    max_test_rows: int | None = Field(
        default=5_000, ge=1_000,
        description="a large table holds out fewer than test_fraction of its labelled rows, "
                    "about this many (a classifier keeps ~500 rows of its rarest class "
                    "there): the rest train the models (null: always test_fraction)")


# each engine's search time in seconds: under 10 s neither H2O nor AutoKeras finishes a model
BUDGET_SECONDS_RANGE = (10, 86_400)


class BudgetSpec(_Strict):
    """What every engine gets: time, seed and threads (engine knobs live under ``engines``)."""

    max_runtime_secs: int = Field(
        default=120, ge=BUDGET_SECONDS_RANGE[0], le=BUDGET_SECONDS_RANGE[1],
        description="each engine's search time (engines run side by side in the cluster); "
                    "H2O's JVM start and model export come on top")
    seed: int = 1
    nthreads: int = Field(default=-1, ge=-1, description="CPU threads per engine (-1: all)")
    max_features: int | None = Field(
        default=None, ge=1,
        description="keep at most this many engineered features, the most important first")


DatetimePart = Literal["year", "month", "day", "dayofweek", "hour", "age_days"]


def _default_datetime_parts() -> list[DatetimePart]:
    return ["year", "month", "dayofweek", "age_days"]


class FeatureSpec(_Strict):
    drop_pii: bool = True
    drop_columns: list[str] = Field(default_factory=list)
    leakage_threshold: float = Field(
        default=0.97, gt=0.5, le=1.0,
        description="a column whose AUC (or |corr| for regression) alone reaches this is dropped as a leak",
    )
    max_text_tokens: int = Field(default=20, ge=0, le=500)
    group_keys: bool = Field(
        default=True,
        description="an integer column that is a group's code (many rows per value; its values' "
                    "own target means predict far better out of fold than a trend over its "
                    "order) becomes categories, one per group, with a warning; false keeps it "
                    "a number",
    )
    datetime_parts: list[DatetimePart] = Field(default_factory=_default_datetime_parts)


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


class TrainingSettings(WithEngines):
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


    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
