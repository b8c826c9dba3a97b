"""Who can reach whom in a planned environment: security groups applied to Neutron stand-ins, then walked.

`tofu plan` of infra/ runs against two OpenStack stand-ins (KVM@TACC and CHI@TACC, tests/support/openstack_standin.py)
through the real OpenStack provider. The plan says which node gets which security group, at which site and whether
it has a floating IP. Then `tofu apply` creates the security groups and their rules in the stand-ins' Neutron, and
the test reads them back through Neutron's API and computes every (source, destination, protocol, port) the rules
admit, as Neutron would: a remote-group rule admits members of that group at the same site, an address rule
admits addresses in its block, and a node without a floating IP is reachable only from its own site's network.
The result must equal the flows the system needs, no more and no fewer.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.infra.paths import INFRA_DIR, cli_config, tofu_binary
from tests.support.openstack_standin import APP_CRED_ID, APP_CRED_SECRET, StandIn

pytestmark = pytest.mark.integration

ADMIN = "192.0.2.10"  # an operator's workstation (admin_cidrs)
PUBLIC = "203.0.113.77"  # an API user (public_cidrs)
PUBLIC_CIDR = "203.0.113.0/25"
INTERNET = "192.0.2.200"  # anyone else
PRIVATE_CIDR = "198.51.100.0/24"
WG_PORT = 51820
VMS = ["monitoring-0", "weaviate-0", "weaviate-1", "weaviate-2", "mlflow-0"]
WEAVIATE = [n for n in VMS if n.startswith("weaviate-")]


def _needed() -> set[tuple[str, str, str, int]]:
    """Every flow the deployment needs on the sites' networks (cross-site service calls ride WireGuard)."""
    flows = {
        ("admin", "monitoring-0", "tcp", 22),  # operators and CI to the bastion
        ("admin", "gpu-0", "tcp", 22),  # Ansible to the GPU node on its floating IP
        ("public", "monitoring-0", "tcp", 3001),  # Grafana
        ("public", "gpu-0", "tcp", 3000),  # the RAG API
    }
    for vm in VMS:
        if vm != "monitoring-0":
            flows.add(("monitoring-0", vm, "tcp", 22))  # Ansible's ProxyJump from the bastion's private address
        # Every VM dials the GPU node's WireGuard hub; anyone may send to it (unknown keys get no answer).
        flows.add((vm, "gpu-0", "udp", WG_PORT))
    for source in ("admin", "public", "internet"):
        flows.add((source, "gpu-0", "udp", WG_PORT))
    for a in WEAVIATE:
        flows.add(("monitoring-0", a, "tcp", 2112))
        flows.add(("monitoring-0", a, "tcp", 9100))
        for b in WEAVIATE:
            if a != b:
                flows |= {(a, b, "tcp", 7946), (a, b, "tcp", 7947), (a, b, "udp", 7946)}
                flows |= {(a, b, "tcp", 8300), (a, b, "tcp", 8301)}
    flows.add(("monitoring-0", "mlflow-0", "tcp", 9100))
    return flows


@dataclass(frozen=True)
class Node:
    key: str
    site: str
    groups: frozenset[str]
    public: bool


def _clouds_yaml(path: Path, sites: dict[str, StandIn]) -> Path:
    lines = ["clouds:"]
    for name, standin in sites.items():
        lines += [
            f"  {name}:",
            "    auth:",
            f"      auth_url: {standin.url}",
            f"      application_credential_id: {APP_CRED_ID}",
            f"      application_credential_secret: {APP_CRED_SECRET}",
            f"    region_name: {standin.region}",
            "    interface: public",
            "    identity_api_version: 3",
            "    auth_type: v3applicationcredential",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("flows")
    infra = work / "infra"
    shutil.copytree(
        INFRA_DIR,
        infra,
        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfvars", "*.tfvars.json", "backend.tf", "tests"),
    )
    (infra / "test.tfvars.json").write_text(
        json.dumps(
            {
                "environment": "staging",
                "key_pair": "tqa-test",
                "admin_cidrs": [f"{ADMIN}/32"],
                "public_cidrs": [PUBLIC_CIDR],
                "private_cidr": PRIVATE_CIDR,
                "wg_cidr": "203.0.113.128/25",
                "gpu_reservation_id": "3f1c9a2e-7d1b-4c55-9b0e-2a6f1d8e4b7c",
            }
        )
    )
    with StandIn(region="KVM@TACC") as kvm, StandIn(region="CHI@TACC") as chi:
        env = dict(
            os.environ,
            OS_CLIENT_CONFIG_FILE=str(_clouds_yaml(work / "clouds.yaml", {"kvm-tacc": kvm, "chi-tacc": chi})),
            CHECKPOINT_DISABLE="1",
            TF_IN_AUTOMATION="1",
        )
        config = cli_config()
        if config is not None:
            env["TF_CLI_CONFIG_FILE"] = str(config)
        tofu = str(tofu_binary())

        def run(*args: str) -> str:
            done = subprocess.run([tofu, *args], cwd=infra, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"tofu {args[0]}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
            return done.stdout

        run("init", "-input=false", "-no-color")
        run("plan", "-input=false", "-no-color", "-var-file=test.tfvars.json", "-out=plan.bin")
        plan = json.loads(run("show", "-json", "plan.bin"))
        targets = [
            f"-target=module.network_{site}.openstack_networking_secgroup_rule_v2.rule" for site in ("kvm", "chi")
        ]
        run("apply", "-input=false", "-no-color", "-auto-approve", "-var-file=test.tfvars.json", *targets)
        yield {"plan": plan, "kvm": kvm, "chi": chi}


def _neutron_groups(standin: StandIn) -> list[dict]:
    """The security groups with their rules, read through Neutron's API like any client."""
    auth = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": APP_CRED_ID, "secret": APP_CRED_SECRET},
            }
        }
    }
    token = httpx.post(f"{standin.url}/auth/tokens", json=auth).headers["X-Subject-Token"]
    reply = httpx.get(f"{standin.base}/network/v2.0/security-groups", headers={"X-Auth-Token": token})
    reply.raise_for_status()
    return reply.json()["security_groups"]


def _nodes(plan: dict) -> dict[str, Node]:
    changes = plan["resource_changes"]
    floating = {
        (c["module_address"], c["index"])
        for c in changes
        if c["type"] == "openstack_networking_floatingip_associate_v2"
    }
    nodes = {}
    for c in changes:
        if c["type"] != "openstack_compute_instance_v2":
            continue
        site = {"module.vms": "kvm", "module.gpu": "chi"}[c["module_address"]]
        after = c["change"]["after"]
        nodes[c["index"]] = Node(
            key=c["index"],
            site=site,
            groups=frozenset(after["security_groups"]),
            public=(c["module_address"], c["index"]) in floating,
        )
    return nodes


def _admitted(nodes: dict[str, Node], groups: dict[str, list[dict]]) -> set[tuple[str, str, str, int]]:
    """Every (source, destination, protocol, port) that the rules admit and the network can deliver."""
    external = {"admin": ADMIN, "public": PUBLIC, "internet": INTERNET}
    private = ipaddress.ip_network(PRIVATE_CIDR)
    flows: set[tuple[str, str, str, int]] = set()
    for dst in nodes.values():
        by_name = {g["name"]: g for g in groups[dst.site]}
        by_id = {g["id"]: g for g in groups[dst.site]}
        for group_name in dst.groups:
            assert group_name in by_name, f"{dst.key} is planned with group {group_name}, which was never created"
            for rule in by_name[group_name]["security_group_rules"]:
                if rule["direction"] != "ingress":
                    continue
                assert rule["protocol"] in ("tcp", "udp"), f"rule without a protocol opens everything: {rule}"
                ports = range(rule["port_range_min"], rule["port_range_max"] + 1)
                assert len(ports) <= 2, f"a wide port range: {rule}"
                sources: list[str] = []
                if rule["remote_group_id"] is not None:
                    member_of = by_id[rule["remote_group_id"]]["name"]
                    sources += [n.key for n in nodes.values() if n.site == dst.site and member_of in n.groups]
                else:
                    block = ipaddress.ip_network(rule["remote_ip_prefix"])
                    assert not block.overlaps(private) or block.prefixlen == 0, f"address rule on our own net: {rule}"
                    if dst.public:
                        sources += [
                            name for name, address in external.items() if ipaddress.ip_address(address) in block
                        ]
                        # Nodes at the other site leave through an address known only after apply: only a rule open
                        # to every address is sure to admit them.
                        if block.prefixlen == 0:
                            sources += [n.key for n in nodes.values() if n.site != dst.site]
                # A node talking to itself never passes its security group.
                flows |= {(s, dst.key, rule["protocol"], port) for s in sources if s != dst.key for port in ports}
    return flows


def test_every_node_is_planned_at_its_site_with_its_roles_group(planned: dict) -> None:
    nodes = _nodes(planned["plan"])
    assert set(nodes) == {*VMS, "gpu-0"}
    for node in nodes.values():
        role = node.key.rsplit("-", 1)[0]
        assert node.groups == {f"tqa-staging-{role}"}
        assert node.site == ("chi" if role == "gpu" else "kvm")
    assert {n.key for n in nodes.values() if n.public} == {"monitoring-0", "gpu-0"}


def test_rules_admit_exactly_the_needed_flows(planned: dict) -> None:
    nodes = _nodes(planned["plan"])
    groups = {"kvm": _neutron_groups(planned["kvm"]), "chi": _neutron_groups(planned["chi"])}
    admitted = _admitted(nodes, groups)
    needed = _needed()
    assert sorted(needed - admitted) == [], "needed flows the rules do not admit"
    assert sorted(admitted - needed) == [], "flows the rules admit that nothing needs"


def test_service_calls_between_sites_cannot_bypass_the_tunnel(planned: dict) -> None:
    nodes = _nodes(planned["plan"])
    groups = {"kvm": _neutron_groups(planned["kvm"]), "chi": _neutron_groups(planned["chi"])}
    admitted = _admitted(nodes, groups)
    # The GPU node reaches Weaviate and MLflow, and Prometheus the GPU node, only inside WireGuard.
    for flow in [("gpu-0", w, "tcp", 8080) for w in WEAVIATE] + [
        ("gpu-0", "mlflow-0", "tcp", 5000),
        ("monitoring-0", "gpu-0", "tcp", 9100),
        ("monitoring-0", "gpu-0", "tcp", 3002),
        ("internet", "gpu-0", "tcp", 22),
        ("public", "weaviate-0", "tcp", 8080),
    ]:
        assert flow not in admitted
    # ... and the tunnel itself can be set up from every VM that the GPU node must reach or be scraped by.
    assert all((vm, "gpu-0", "udp", WG_PORT) in admitted for vm in VMS)
