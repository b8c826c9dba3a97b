"""Shared fixtures and hooks: a clean `TQA_*` environment for every test, `gpu` tests skipped without CUDA."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's TQA_* settings."""
    for key in list(os.environ):
        if key.startswith("TQA_"):
            monkeypatch.delenv(key)


# The slowest files, slowest first: seconds of setup and calls in a `make test` under a load average of ~12 (about
# 2.5 times a quiet machine's). `make test PYTEST_WORKERS=2` hands whole files to two xdist workers in this order, then
# the rest in collection order (`--dist loadfile --no-loadscope-reorder`), so the nspawn fleet's long boot runs beside
# everything else instead of last. No two files share a fixed name, port or path, so any two may run at once.
SLOWEST_FIRST = (
    "tests/integration/test_infra_systemd.py",  # 1126 s: six systemd-nspawn machines booted, then Ansible twice
    "tests/integration/test_release_canary.py",  # 937 s
    "tests/integration/test_ct_cycle.py",  # 601 s
    "tests/integration/test_cluster_faults.py",  # 343 s
    "tests/integration/test_mlflow_register.py",  # 287 s
    "tests/integration/test_feedback_mlflow.py",  # 227 s
    "tests/integration/test_web_page.py",  # 226 s
    "tests/integration/test_generator_training.py",  # 221 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first (stable: each file keeps its own order); `gpu` tests are skipped, with the reason,
    where torch sees no CUDA device."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return  # torch is not imported for a run without gpu tests
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is false)")
    for item in gpu_items:
        item.add_marker(skip)
