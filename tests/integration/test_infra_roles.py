"""The site playbook applied for real to fresh Debian 12 targets (chroot connection): Weaviate and monitoring roles.

Four targets are unpacked from the Debian 12 root file system that scripts/infra/build-target-rootfs.sh builds
(debootstrap): three Weaviate nodes and one monitoring node. The playbook runs through `tqa infra configure`'s code
path (ansible-runner), twice: the second run must change nothing. Then the installed units are started the way
systemd would (their ExecStart and EnvironmentFile, inside each target), and the result must be a healthy 3-node
Weaviate cluster with API-key auth and a Prometheus that accepts our config and scrapes all three nodes.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ml.settings import Settings
from ops.infra.configure import run_playbook
from ops.infra.paths import ANSIBLE_DIR, tools_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TARBALL = tools_dir() / "debian12-target.tar"
WEAVIATE_NODES = 3


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _free_pair() -> int:
    """A port p with p + 1 also free: Weaviate derives a peer's data port (gossip + 1) and Raft RPC port (Raft + 1)."""
    for _ in range(100):
        (port,) = _free_ports(1)
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports on 127.0.0.1")


def _unit_command(root: Path, unit: Path, defaults: dict[str, str]) -> tuple[list[str], dict[str, str], str]:
    """ExecStart, environment and user of a systemd unit, as systemd would resolve them."""
    lines = (root / unit.relative_to("/")).read_text().splitlines()
    fields: dict[str, str] = {}
    for line in lines:
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    env = dict(defaults)
    env_file = fields.get("EnvironmentFile", "").lstrip("-")
    if env_file and (root / env_file.lstrip("/")).is_file():
        for line in (root / env_file.lstrip("/")).read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                env[key] = value.strip('"')
    argv: list[str] = []
    for token in shlex.split(fields["ExecStart"]):
        if token.startswith("$"):
            argv.extend(shlex.split(env.get(token.strip("${}"), "")))
        else:
            argv.append(token)
    return argv, env, fields.get("User", "root")


def _start_in_target(root: Path, argv: list[str], env: dict[str, str], user: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                "chroot",
                f"--userspec={user}:{user}",
                str(root),
                "env",
                "-i",
                *[f"{k}={v}" for k, v in env.items()],
                *argv,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(check, what: str, timeout_s: float = 120.0) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout_s:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    if os.geteuid() != 0:
        pytest.fail("The role application test needs root (chroot): run it as CI does, as root.")
    if not TARBALL.is_file():
        pytest.fail(f"{TARBALL} is missing: run `make infra-tools` (scripts/infra/build-target-rootfs.sh).")
    base = tmp_path_factory.mktemp("targets")
    roots = {}
    for name in [f"weaviate-{i}" for i in range(WEAVIATE_NODES)] + ["monitoring-0"]:
        root = base / name
        root.mkdir()
        with tarfile.open(TARBALL) as tar:
            tar.extractall(root, filter="fully_trusted")
        # Like any host's: name resolution files (debootstrap's minbase writes neither).
        for name_file in ("resolv.conf", "hosts"):
            (root / "etc" / name_file).write_text((Path("/etc") / name_file).read_text())
        roots[name] = root
    yield roots


@pytest.fixture(scope="module")
def deployment(targets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    ports = iter(_free_ports(9 * WEAVIATE_NODES + 2))
    api_key = secrets.token_urlsafe(24)
    nodes = {}
    for i in range(WEAVIATE_NODES):
        gossip, raft = _free_pair(), _free_pair()
        nodes[f"weaviate-{i}"] = {
            "ansible_connection": "community.general.chroot",
            "ansible_host": str(targets[f"weaviate-{i}"]),
            "weaviate_node_name": f"weaviate-{i}",
            "weaviate_http_port": next(ports),
            "weaviate_grpc_port": next(ports),
            "weaviate_gossip_port": gossip,
            "weaviate_raft_port": raft,
            "weaviate_metrics_port": next(ports),
            "weaviate_profiling_port": next(ports),
        }
    prometheus_port, alertmanager_port = next(ports), next(ports)
    inventory = {
        "all": {
            "vars": {"tqa_environment": "staging"},
            "children": {
                "weaviate": {
                    "hosts": nodes,
                    "vars": {
                        "weaviate_binary_src": str(Settings().weaviate_binary),
                        "weaviate_bind_host": "127.0.0.1",
                        "weaviate_cluster_in_localhost": True,
                        "weaviate_peer_address": "localhost",
                        "weaviate_manage_service": False,
                        "weaviate_api_keys": [api_key],
                        "weaviate_api_users": ["tqa-admin"],
                    },
                },
                "monitoring": {
                    "hosts": {
                        "monitoring-0": {
                            "ansible_connection": "community.general.chroot",
                            "ansible_host": str(targets["monitoring-0"]),
                        }
                    },
                    "vars": {
                        "monitoring_manage_services": False,
                        "monitoring_grafana_enabled": False,
                        "monitoring_listen_host": "127.0.0.1",
                        "monitoring_prometheus_port": prometheus_port,
                        "monitoring_alertmanager_port": alertmanager_port,
                        "monitoring_scrape_interval": "2s",
                        "monitoring_weaviate_targets": [
                            f"127.0.0.1:{n['weaviate_metrics_port']}" for n in nodes.values()
                        ],
                    },
                },
            },
        }
    }
    work = tmp_path_factory.mktemp("deploy")
    inventory_path = work / "hosts.yml"
    inventory_path.write_text(yaml.safe_dump(inventory))
    first = run_playbook("site.yml", inventory_path, ansible_dir=ANSIBLE_DIR, say=print)
    second = run_playbook("site.yml", inventory_path, ansible_dir=ANSIBLE_DIR, say=print)
    processes: list[subprocess.Popen] = []
    yield {
        "first": first,
        "second": second,
        "nodes": nodes,
        "api_key": api_key,
        "prometheus_port": prometheus_port,
        "targets": targets,
        "processes": processes,
        "logs": work,
    }
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_first_run_configures_every_target(deployment: dict) -> None:
    changed = deployment["first"].changed
    assert set(changed) == {"weaviate-0", "weaviate-1", "weaviate-2", "monitoring-0"}
    assert all(count > 0 for count in changed.values())


def test_second_run_changes_nothing(deployment: dict) -> None:
    second = deployment["second"]
    assert set(second.ok) == {"weaviate-0", "weaviate-1", "weaviate-2", "monitoring-0"}
    assert second.total_changed == 0, second.changed


def test_installed_weaviate_units_form_a_healthy_three_node_cluster(deployment: dict) -> None:
    for name, root in deployment["targets"].items():
        if not name.startswith("weaviate-"):
            continue
        argv, env, user = _unit_command(root, Path("/etc/systemd/system/weaviate.service"), {})
        assert env["DISABLE_TELEMETRY"] == "true" and env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
        deployment["processes"].append(_start_in_target(root, argv, env, user, deployment["logs"] / f"{name}.log"))

    headers = {"Authorization": f"Bearer {deployment['api_key']}"}
    first_port = deployment["nodes"]["weaviate-0"]["weaviate_http_port"]
    for node in deployment["nodes"].values():
        url = f"http://127.0.0.1:{node['weaviate_http_port']}/v1/.well-known/ready"
        _wait_for(lambda url=url: httpx.get(url, timeout=2).status_code == 200, f"{url} ready")

    def cluster_healthy() -> list[dict] | None:
        nodes = httpx.get(f"http://127.0.0.1:{first_port}/v1/nodes", headers=headers, timeout=5).json()["nodes"]
        return nodes if len(nodes) == 3 and all(n["status"] == "HEALTHY" for n in nodes) else None

    nodes = _wait_for(cluster_healthy, "3 HEALTHY nodes")
    assert sorted(n["name"] for n in nodes) == ["weaviate-0", "weaviate-1", "weaviate-2"]
    anonymous = httpx.get(f"http://127.0.0.1:{first_port}/v1/nodes", timeout=5)
    assert anonymous.status_code == 401


def test_installed_prometheus_accepts_our_config_and_scrapes_weaviate(deployment: dict) -> None:
    root = deployment["targets"]["monitoring-0"]
    check = subprocess.run(
        ["chroot", str(root), "promtool", "check", "config", "/etc/prometheus/prometheus.yml"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    unit = next(
        p
        for p in (Path("/lib/systemd/system/prometheus.service"), Path("/usr/lib/systemd/system/prometheus.service"))
        if (root / p.relative_to("/")).is_file()
    )
    argv, env, user = _unit_command(root, unit, {})
    argv.append("--storage.tsdb.path=/var/lib/prometheus/metrics2")
    deployment["processes"].append(_start_in_target(root, argv, env, user, deployment["logs"] / "prometheus.log"))

    base = f"http://127.0.0.1:{deployment['prometheus_port']}"
    _wait_for(lambda: httpx.get(f"{base}/-/ready", timeout=2).status_code == 200, "Prometheus ready")

    def weaviate_targets_up() -> list[dict] | None:
        active = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        weaviate = [t for t in active if t["labels"]["job"] == "weaviate"]
        return weaviate if len(weaviate) == 3 and all(t["health"] == "up" for t in weaviate) else None

    _wait_for(weaviate_targets_up, "three Weaviate scrape targets up")
    rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert "WeaviateNodeDown" in json.dumps(rules)
