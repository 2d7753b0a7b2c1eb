"""The drift-monitoring components (see pipelines/monitoring/drift_monitoring.py). Found by
convention: see ``components``."""
