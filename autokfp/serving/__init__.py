"""Serving: the KServe InferenceService for a registered model (and, later, the predictor)."""
