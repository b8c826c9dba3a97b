"""Experiment tracking and the model registry: the MLflow server, eval runs, the pyfunc pipeline, gated aliases."""
