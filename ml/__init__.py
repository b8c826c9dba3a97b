"""Transformers QA machine-learning stages: sources, index, answers, datasets, evaluation."""
