"""Shared fixtures: a clean `TQA_*` environment for every test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's TQA_* settings."""
    for key in list(os.environ):
        if key.startswith("TQA_"):
            monkeypatch.delenv(key)
