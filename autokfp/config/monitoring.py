"""Monitoring: labels, drift, performance, anomalies and the schedule of retraining."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autokfp.config.base import _Strict

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
