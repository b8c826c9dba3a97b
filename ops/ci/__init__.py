"""Continuous integration run here: the GitHub workflows replayed on this machine as GitHub runs them."""
