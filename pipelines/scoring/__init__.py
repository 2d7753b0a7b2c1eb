"""The ``batch-scoring`` pipeline: score a dataset with a registered model."""
