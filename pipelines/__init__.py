"""Pipelines built only from ``autokfp.components`` (the repository's ``components/``).

``PIPELINES`` maps each pipeline's name to a factory ``build(options) -> pipeline`` so the
same graph compiles with cluster settings (GPU node selector, tolerations, config map and
secret names) and runs locally under kfp.local, where those settings are ignored.
"""

from autokfp.pipelines.cluster import ClusterOptions
from autokfp.pipelines.discovery.discovery import build_discovery
from autokfp.pipelines.monitoring.drift_monitoring import build_drift_monitoring
from autokfp.pipelines.scoring.batch_scoring import build_batch_scoring
from autokfp.pipelines.training.autonomous_training import build_autonomous_training

PIPELINES = {"autonomous-training": build_autonomous_training, "discovery": build_discovery,
             "drift-monitoring": build_drift_monitoring, "batch-scoring": build_batch_scoring}

__all__ = ["PIPELINES", "ClusterOptions", "build_autonomous_training", "build_batch_scoring",
           "build_discovery", "build_drift_monitoring"]
