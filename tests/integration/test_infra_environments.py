"""Environments apart: each has its own workspace (state), variables and lease; applying one leaves the others.

`tqa infra`'s runner (ops/infra/terraform.py) drives OpenTofu against two OpenStack stand-ins. Staging and canary
are applied (their security groups, which the stand-ins' Neutron really holds), then canary is destroyed: staging's
groups must still be there, each environment's state in its own workspace, and nothing in the default state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ops.infra.paths import INFRA_DIR
from ops.infra.terraform import InfraRunner
from tests.integration.test_infra_flows import _clouds_yaml, _neutron_groups
from tests.support.openstack_standin import StandIn

pytestmark = pytest.mark.integration

RULES = [f"module.network_{site}.openstack_networking_secgroup_rule_v2.rule" for site in ("kvm", "chi")]


def _tfvars(environment: str) -> str:
    return "\n".join(
        [
            f'environment        = "{environment}"',
            'key_pair           = "tqa-test"',
            'admin_cidrs        = ["192.0.2.10/32"]',
            'public_cidrs       = ["203.0.113.0/25"]',
            'private_cidr       = "198.51.100.0/24"',
            'wg_cidr            = "203.0.113.128/25"',
            "",
        ]
    )


def test_applying_canary_leaves_staging_and_destroying_it_leaves_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(
        INFRA_DIR,
        infra,
        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfvars", "*.json", "backend.tf", "tests"),
    )
    for environment in ("staging", "canary"):
        (infra / f"{environment}.tfvars").write_text(_tfvars(environment))
        # Each environment's own lease, as `tqa infra lease <env>` records it.
        (infra / f"lease-{environment}.tfvars.json").write_text(
            json.dumps({"gpu_reservation_id": f"reservation-of-{environment}"})
        )
    monkeypatch.delenv("TF_WORKSPACE", raising=False)
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    with StandIn(region="KVM@TACC") as kvm, StandIn(region="CHI@TACC") as chi:
        monkeypatch.setenv(
            "OS_CLIENT_CONFIG_FILE", str(_clouds_yaml(tmp_path / "clouds.yaml", {"kvm-tacc": kvm, "chi-tacc": chi}))
        )

        def names() -> set[str]:
            return {g["name"] for g in _neutron_groups(kvm) + _neutron_groups(chi)}

        staging = InfraRunner("staging", infra_dir=infra)
        staging.init()
        assert staging.workspace() == "staging"
        staging.apply(targets=RULES)
        canary = InfraRunner("canary", infra_dir=infra)
        canary.init()
        _, plan = canary.plan()
        assert "reservation-of-canary" in plan and "reservation-of-staging" not in plan
        canary.apply(targets=RULES)
        both = names()
        assert {"tqa-staging-weaviate", "tqa-canary-weaviate", "tqa-staging-gpu", "tqa-canary-gpu"} <= both

        canary.destroy()
        left = names()
        assert not any(n.startswith("tqa-canary-") for n in left)
        assert {n for n in both if n.startswith("tqa-staging-")} == left

    states = infra / "terraform.tfstate.d"
    assert sorted(p.name for p in states.iterdir()) == ["canary", "staging"]
    assert not (infra / "terraform.tfstate").exists()
    staging_state = json.loads((states / "staging" / "terraform.tfstate").read_text())
    assert len(staging_state["resources"]) > 0
