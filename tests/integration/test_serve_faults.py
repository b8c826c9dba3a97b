"""`tqa serve` killed under load and restarted: clients retry through it and no acknowledged rating is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Indexed
from tests.support.serve_faults import run_restart_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_and_restart_under_load_loses_no_acknowledged_rating(indexed: Indexed, tmp_path: Path) -> None:
    report = run_restart_scenario(indexed.settings, tmp_path, clients=6, before_s=4.0, after_s=3.0)
    assert report.gave_up == 0, report.errors[:3]
    assert report.ratings_acked > 0 and report.acked_across_restart > 0, report
    assert report.ratings_found == report.ratings_acked, report.errors[:3]
