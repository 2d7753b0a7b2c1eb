"""Modeling: tasks and metrics, features, partition, evaluation, validation, calibration,
selection, the model package and the MLflow registry."""
