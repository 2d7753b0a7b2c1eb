"""The drift-monitoring components (see pipelines/monitoring/drift_monitoring.py)."""

from components.monitoring.collect_predictions.component import collect_predictions
from components.monitoring.decide_retraining.component import decide_retraining
from components.monitoring.detect_anomalies.component import detect_anomalies
from components.monitoring.detect_drift.component import detect_drift
from components.monitoring.finalize_monitoring.component import finalize_monitoring
from components.monitoring.measure_performance.component import measure_performance
from components.monitoring.record_retraining.component import record_retraining

MONITORING_COMPONENTS = (
    collect_predictions,
    detect_drift,
    measure_performance,
    detect_anomalies,
    decide_retraining,
    record_retraining,
    finalize_monitoring,
)

__all__ = [
    "MONITORING_COMPONENTS",
    "collect_predictions",
    "decide_retraining",
    "detect_anomalies",
    "detect_drift",
    "finalize_monitoring",
    "measure_performance",
    "record_retraining",
]
