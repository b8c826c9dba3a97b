"""Two pytest-xdist workers never pick the same port: each keeps to a share of its own."""

from __future__ import annotations

import socket

import pytest

from tests.support.ports import free_port, free_port_range, worker_share


def _as_worker(monkeypatch: pytest.MonkeyPatch, index: int | None, count: int = 2) -> None:
    if index is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))


def test_outside_xdist_every_port_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_worker(monkeypatch, None)
    assert worker_share() == (0, 1)
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # it was free


def test_two_workers_draw_disjoint_ports_and_keep_weaviates_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[int, set[int]] = {}
    for index in (0, 1):
        _as_worker(monkeypatch, index)
        assert worker_share() == (index, 2)
        drawn[index] = {free_port() for _ in range(40)}
        # p and p + 1 (Weaviate's gossip/data and Raft/RPC pairs) fall in the same worker's share.
        assert all(((p - 1) // 2) % 2 == index and (p // 2) % 2 == index for p in drawn[index] if p % 2)
    assert not drawn[0] & drawn[1]


def test_port_ranges_come_from_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    bases = {}
    for index in (0, 1):
        _as_worker(monkeypatch, index)
        bases[index] = [free_port_range(5) for _ in range(20)]
    assert all(20000 <= b and b + 5 <= 26000 for b in bases[0])
    assert all(26000 <= b and b + 5 <= 32000 for b in bases[1])
