"""Lease windows, recorded leases and the Terraform/Ansible front doors refuse mistakes with one clear sentence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ml.errors import UserError
from ops.infra import lease as leases
from ops.infra.configure import configure, run_playbook
from ops.infra.terraform import InfraRunner


def test_lease_window_starts_now_by_default_and_lasts_the_hours_asked() -> None:
    now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert leases.LeaseRequest(name="x", hours=6).window(now) == ("now", "2026-03-01 16:00")
    later = leases.LeaseRequest(name="x", hours=1.5, start=datetime(2026, 3, 2, 8, 30, tzinfo=UTC))
    assert later.window(now) == ("2026-03-02 08:30", "2026-03-02 10:00")


def test_lease_longer_than_a_week_is_refused() -> None:
    with pytest.raises(ValueError, match="less than or equal to 168"):
        leases.LeaseRequest(name="x", hours=200)


def test_lease_without_node_reservation_is_not_written(tmp_path: Path) -> None:
    info = leases.LeaseInfo(
        id="l1",
        name="n",
        status="ACTIVE",
        node_reservation_id=None,
        fip_reservation_id="f1",
        start_date="",
        end_date="",
    )
    with pytest.raises(UserError, match="no node reservation"):
        leases.write_reservation(info, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_release_without_a_recorded_lease_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pass the lease id or name"):
        leases.recorded_lease(tmp_path)


def test_missing_clouds_yaml_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="download clouds.yaml"):
        leases.configure_from_clouds_yaml("chi-tacc", tmp_path / "clouds.yaml")


def test_missing_var_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="copy infra/sample.tfvars"):
        InfraRunner(tmp_path / "staging.tfvars", binary=Path("/bin/true"))


def test_unknown_environment_and_missing_inventory_are_user_errors() -> None:
    with pytest.raises(UserError, match="Unknown environment 'prod'"):
        configure("prod")
    with pytest.raises(UserError, match="does not exist"):
        run_playbook("site.yml", Path("/nonexistent/inventory"))
