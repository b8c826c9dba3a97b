"""Evaluation: retrieval and answer metrics on dev and generated question sets."""
