"""A real 3-node Weaviate cluster with replication factor 3 survives kill -9 of one node under load, on its own and
behind `tqa serve` (ingest runs writing, /ask and /search reading through the API)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.cluster_faults import run_fault_scenario, run_service_fault_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_one_node_loses_no_acknowledged_write_and_no_quorum_read(tmp_path: Path) -> None:
    report = run_fault_scenario(tmp_path, before_s=4.0, down_s=6.0, after_s=2.0, catch_up_timeout_s=120.0)
    assert report.writes_acked > 0 and report.reads_while_down > 0, report
    assert report.writes_found == report.writes_acked, f"{report.lost} acknowledged writes lost: {report.errors[:3]}"
    assert report.reads_failed == 0, report.errors[:3]
    assert math.isfinite(report.catch_up_s), f"the restarted node did not catch up: {report.counts_after}"
    assert len(set(report.counts_after.values())) == 1, report.counts_after


def test_kill_9_one_node_behind_the_service_fails_no_request_and_loses_no_ingested_chunk(tmp_path: Path) -> None:
    report = run_service_fault_scenario(tmp_path, before_s=4.0, down_s=8.0, after_s=2.0)
    assert report.ingest_runs_acked > 0 and report.requests_while_down > 0, report
    assert report.chunks_found == report.chunks_acked, f"{report.lost} acknowledged chunks lost: {report.errors[:3]}"
    assert report.markers_found_via_search == report.ingest_runs_acked, report.errors[:3]
    assert report.requests_failed == 0, report.errors[:3]
    assert math.isfinite(report.catch_up_s), f"the restarted node did not catch up: {report.counts_after}"
