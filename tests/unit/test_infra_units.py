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
        leases.write_reservation(info, tmp_path, "staging")
    assert list(tmp_path.iterdir()) == []


def test_release_without_a_recorded_lease_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pass the lease id or name"):
        leases.recorded_lease(tmp_path, "staging")


def test_missing_clouds_yaml_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="download clouds.yaml"):
        leases.configure_from_clouds_yaml("chi-tacc", tmp_path / "clouds.yaml")


def test_missing_var_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="copy infra/sample.tfvars"):
        InfraRunner("staging", infra_dir=tmp_path, binary=Path("/bin/true"))


def test_a_var_file_of_another_environment_is_refused(tmp_path: Path) -> None:
    (tmp_path / "canary.tfvars").write_text('environment = "staging"\nkey_pair = "k"\n')
    with pytest.raises(UserError, match="is for environment 'staging', not 'canary'"):
        InfraRunner("canary", infra_dir=tmp_path, binary=Path("/bin/true"))


def test_configure_refuses_unseen_host_keys_and_a_vault_without_its_password(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory" / "staging"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all: {}\n")
    with pytest.raises(UserError, match="host keys are never accepted unseen"):
        configure("staging", ansible_dir=tmp_path)
    vault = tmp_path / "vault.yml"
    vault.write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    with pytest.raises(UserError, match="vault-encrypted: pass --vault-password-file"):
        configure("staging", ansible_dir=tmp_path, secrets_file=vault, known_hosts=tmp_path / "known_hosts")


def test_unknown_environment_and_missing_inventory_are_user_errors() -> None:
    with pytest.raises(UserError, match="Unknown environment 'prod'"):
        configure("prod")
    with pytest.raises(UserError, match="does not exist"):
        run_playbook("site.yml", Path("/nonexistent/inventory"))
