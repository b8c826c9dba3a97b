"""A real 3-node Weaviate cluster with replication factor 3 survives kill -9 of one node under load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.cluster_faults import run_fault_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_one_node_loses_no_acknowledged_write_and_no_quorum_read(tmp_path: Path) -> None:
    report = run_fault_scenario(tmp_path, before_s=4.0, down_s=6.0, after_s=2.0, catch_up_timeout_s=120.0)
    assert report.writes_acked > 0 and report.reads_while_down > 0, report
    assert report.writes_found == report.writes_acked, f"{report.lost} acknowledged writes lost: {report.errors[:3]}"
    assert report.reads_failed == 0, report.errors[:3]
    assert math.isfinite(report.catch_up_s), f"the restarted node did not catch up: {report.counts_after}"
    assert len(set(report.counts_after.values())) == 1, report.counts_after
