"""The site playbook applied over SSH to machines that boot systemd (systemd-nspawn), twice, handlers and waits on.

Six Debian 12 machines boot under `systemd-nspawn --boot` (tests/support/nspawn.py), each in its own network
namespace on a host-only bridge: the bastion `monitoring-0`, three Weaviate nodes, `mlflow-0` and `gpu-0` (the
WireGuard hub and the `nvidia` group, without a GPU). Ansible reaches the bastion directly and every other machine
with ProxyJump through the bastion, as in production, checking host keys against a known_hosts file. The playbook
runs through `tqa infra configure`'s code path (ansible-runner) with every service managed by systemd, every handler
and every readiness wait on; the second run must change nothing. Then: the three Weaviate units form a healthy
cluster that replicates with factor 3 behind API keys, Prometheus (a systemd unit) scrapes them, MLflow keeps its
runs in PostgreSQL and refuses calls without its admin login, the nvidia role refuses a node without a GPU in one
sentence, and the WireGuard tunnel (wireguard-go: this kernel has no WireGuard module) carries traffic from every
spoke to the hub. On `gpu-0` the tqa_serving role installs the project's wheel, runs its ingest job into the
cluster (replication factor 3, over the tunnel) and serves it with the Qwen runner on the CPU (a tiny random-weight
Qwen2 built here); the machine has no internet, so the host lends it, read-only, the test environment's installed
dependencies (the role's offline path: a .pth file and `pip --no-index`), the corpus and the model.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ml.errors import UserError
from ml.settings import Settings
from ops.infra.configure import PlaybookResult, configure
from ops.infra.paths import ANSIBLE_DIR
from tests.support import nspawn
from tests.support.corpus import make_mini_corpus
from tests.support.tiny_qwen import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEAVIATE = ["weaviate-0", "weaviate-1", "weaviate-2"]
MACHINES = ["monitoring-0", *WEAVIATE, "mlflow-0", "gpu-0"]
WG_CIDR = "203.0.113.128/25"
UNITS = {
    "weaviate": ["weaviate"],
    "monitoring": ["prometheus", "prometheus-alertmanager"],
    "mlflow": ["mlflow"],
    "gpu": ["tqa-ingest", "tqa-qwen-runner", "tqa-rag"],
}
ROOT = Path(__file__).resolve().parents[2]
# Where gpu-0 sees what the host lends it. The dependency tree keeps its host path: the embedding model's ONNX
# export is keyed by where the model lives.
SITE_PACKAGES = sysconfig.get_path("purelib")
CORPUS_AT = "/srv/corpus/transformers"
MODEL_AT = "/srv/tiny-qwen"


@pytest.fixture(scope="module")
def serving_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The project's wheel (as `pip wheel` builds it from this tree), the mini corpus and a tiny Qwen model."""
    base = tmp_path_factory.mktemp("serving")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", base, ROOT],
        check=True,
        capture_output=True,
    )
    (wheel,) = base.glob("transformers_qa-*.whl")
    corpus = make_mini_corpus(base / "corpus")
    model = build_tiny_model(base / "tiny-qwen")
    # The runner reads it as the service user (safetensors writes its file for the owner alone).
    for path in model.iterdir():
        path.chmod(0o644)
    return {"wheel": wheel, "corpus": corpus.root, "model": model}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, serving_artifacts: dict[str, Path]) -> Iterator[nspawn.Fleet]:
    why = nspawn.unavailable()
    if why and os.geteuid() != 0 and os.environ.get("TQA_ROOT_TESTS_ELSEWHERE") == "1":
        pytest.skip(f"{why} (TQA_ROOT_TESTS_ELSEWHERE: CI's infra job runs it as root)")
    if why:
        pytest.fail(why)
    lent = {
        Path(SITE_PACKAGES): SITE_PACKAGES,
        serving_artifacts["corpus"]: CORPUS_AT,
        serving_artifacts["model"]: MODEL_AT,
    }
    booted = nspawn.boot(MACHINES, tmp_path_factory.mktemp("machines"), binds={"gpu-0": lent})
    try:
        yield booted
    finally:
        nspawn.shutdown(booted)


def _inventory(fleet: nspawn.Fleet, wheel: Path) -> dict:
    bastion = fleet.machines["monitoring-0"].address
    wg = [f"203.0.113.{129 + i}" for i in range(len(MACHINES))]

    def host(name: str, index: int) -> dict:
        machine = fleet.machines[name]
        out = {
            "ansible_host": machine.address,
            "private_ip": machine.address,
            # The hub (gpu-0) has the first overlay address, each spoke one of its own after it.
            "wg_address": wg[0] if name == "gpu-0" else wg[index + 1],
            "wg_hub": name == "gpu-0",
        }
        if name == "gpu-0":
            out["wg_endpoint"] = f"{machine.address}:51820"
        elif name != "monitoring-0":
            # The production inventory's jump: through the bastion's private address.
            out["ansible_ssh_common_args"] = f"-o ProxyJump=root@{bastion}"
        return out

    hosts = {name: host(name, i) for i, name in enumerate(MACHINES)}
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "tqa_environment": "staging",
                "wg_cidr": WG_CIDR,
                "wg_port": 51820,
                "wireguard_userspace": True,
            },
            "children": {
                "weaviate": {
                    "hosts": {n: hosts[n] for n in WEAVIATE},
                    "vars": {"weaviate_binary_src": str(Settings().weaviate_binary)},
                },
                "monitoring": {
                    "hosts": {"monitoring-0": hosts["monitoring-0"]},
                    "vars": {"monitoring_grafana_enabled": False, "monitoring_scrape_interval": "2s"},
                },
                "mlflow": {
                    "hosts": {"mlflow-0": hosts["mlflow-0"]},
                    "vars": {
                        # pip trusts its own certificate list, not the system's: name the system bundle.
                        "mlflow_pip_extra_args": f"--proxy {fleet.proxy.url} --cert /etc/ssl/certs/ca-certificates.crt",
                    },
                },
                # A CPU-only machine in the GPU group: the driver check, the refusal and the files, not the GPU.
                "nvidia": {"hosts": {"gpu-0": hosts["gpu-0"]}, "vars": {"nvidia_require_gpu": False}},
                "tqa_serving": {
                    "hosts": {"gpu-0": hosts["gpu-0"]},
                    "vars": {
                        "tqa_serving_wheel": str(wheel),
                        "tqa_serving_site_packages": SITE_PACKAGES,
                        "tqa_serving_pip_extra_args": "--no-index",
                        "tqa_serving_model": MODEL_AT,
                        "tqa_serving_ingest_path": CORPUS_AT,
                        # Nothing is registered in this MLflow yet: the wheel's own settings serve.
                        "tqa_serving_model_alias": "",
                    },
                },
                "wireguard": {"hosts": hosts},
            },
        }
    }


@pytest.fixture(scope="module")
def deployment(fleet: nspawn.Fleet, serving_artifacts: dict[str, Path]) -> dict:
    """`tqa infra configure staging` as an operator runs it: inventory and known_hosts in the environment's
    directory, every secret in an Ansible Vault file opened with a password file, host keys checked strictly."""
    api_key = secrets.token_urlsafe(24)
    mlflow_admin = secrets.token_urlsafe(24)
    work = fleet.base / "deploy"
    ansible_dir = work / "ansible"
    environment_dir = ansible_dir / "inventory" / "staging"
    environment_dir.mkdir(parents=True)
    for shared in ("ansible.cfg", "site.yml", "roles"):
        (ansible_dir / shared).symlink_to(ANSIBLE_DIR / shared)
    (ansible_dir / "nvidia.yml").write_text(
        yaml.safe_dump([{"name": "GPU check", "hosts": "nvidia", "become": True, "roles": ["nvidia"]}])
    )
    (environment_dir / "hosts.yml").write_text(yaml.safe_dump(_inventory(fleet, serving_artifacts["wheel"])))
    shutil.copyfile(fleet.known_hosts, environment_dir / "known_hosts")
    vault_key = work / "vault-password"
    vault_key.write_text(secrets.token_urlsafe(32))
    vault = work / "staging-secrets.yml"
    vault.write_text(
        yaml.safe_dump(
            {
                "weaviate_api_keys": [api_key],
                "weaviate_api_users": ["tqa-admin"],
                "mlflow_db_password": secrets.token_urlsafe(24),
                "mlflow_admin_password": mlflow_admin,
                "mlflow_secret_key": secrets.token_urlsafe(40),
                "tqa_serving_weaviate_api_key": api_key,
                "tqa_serving_mlflow_password": mlflow_admin,
            }
        )
    )
    encrypt = [str(Path(sys.executable).parent / "ansible-vault"), "encrypt", "--vault-password-file", str(vault_key)]
    subprocess.run([*encrypt, str(vault)], check=True, capture_output=True)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;") and api_key not in vault.read_text()

    def run(**kwargs: object) -> PlaybookResult:
        return configure(
            "staging",
            ansible_dir=ansible_dir,
            secrets_file=vault,
            vault_password_file=vault_key,
            ssh_key=fleet.ssh_key,
            **kwargs,
        )

    started = time.monotonic()
    try:
        first = run(say=print)
        first_s = time.monotonic() - started
        second = run(say=print)
    except UserError:
        _print_journals(fleet)
        raise
    second_s = time.monotonic() - started - first_s
    print(f"site.yml on {len(MACHINES)} machines: first run {first_s:.0f} s, second run {second_s:.0f} s")
    return {
        "first": first,
        "second": second,
        "api_key": api_key,
        "mlflow_admin": mlflow_admin,
        "fleet": fleet,
        "run": run,
    }


def _print_journals(fleet: nspawn.Fleet) -> None:
    """What each machine's services said, so a failed run in CI shows why."""
    for name in fleet.machines:
        units = fleet.ssh(name, "systemctl list-units --failed --plain --no-legend; journalctl -b -p warning -n 40")
        print(f"== {name}\n{units.stdout}{units.stderr}")
        for unit in UNITS.get(name.rsplit("-", 1)[0], []):
            print(fleet.ssh(name, f"journalctl -u {unit} -n 30 --no-pager").stdout)


def test_first_run_configures_every_machine(deployment: dict) -> None:
    changed = deployment["first"].changed
    assert set(changed) == set(MACHINES)
    assert all(count > 0 for count in changed.values())


def test_second_run_changes_nothing(deployment: dict) -> None:
    second = deployment["second"]
    assert set(second.ok) == set(MACHINES)
    assert second.total_changed == 0, second.changed


def test_services_run_under_systemd(deployment: dict) -> None:
    fleet = deployment["fleet"]
    for name in WEAVIATE:
        state = fleet.ssh(name, "systemctl is-active weaviate wg-quick@wg0 && systemctl is-enabled weaviate")
        assert state.stdout.split() == ["active", "active", "enabled"], (name, state.stdout, state.stderr)
    state = fleet.ssh("monitoring-0", "systemctl is-active prometheus prometheus-alertmanager wg-quick@wg0")
    assert state.stdout.split() == ["active"] * 3, state.stdout + state.stderr
    booted = fleet.ssh("gpu-0", "systemctl is-system-running")
    assert booted.stdout.strip() in ("running", "degraded"), booted.stdout


def test_weaviate_cluster_is_healthy_and_replicates_with_factor_three(deployment: dict) -> None:
    fleet = deployment["fleet"]
    headers = {"Authorization": f"Bearer {deployment['api_key']}"}
    base = f"http://{fleet.machines['weaviate-0'].address}:8080"
    nodes = httpx.get(f"{base}/v1/nodes", headers=headers, timeout=10).json()["nodes"]
    assert sorted(n["name"] for n in nodes) == WEAVIATE
    assert all(n["status"] == "HEALTHY" for n in nodes)
    assert httpx.get(f"{base}/v1/nodes", timeout=10).status_code == 401
    schema = {"class": "Probe", "vectorizer": "none", "replicationConfig": {"factor": 3}}
    created = httpx.post(f"{base}/v1/schema", json=schema, headers=headers, timeout=30)
    assert created.status_code == 200, created.text
    obj = {"class": "Probe", "properties": {"text": "replicated"}, "vector": [0.1, 0.2, 0.3]}
    put = httpx.post(f"{base}/v1/objects?consistency_level=ALL", json=obj, headers=headers, timeout=30)
    assert put.status_code == 200, put.text
    object_id = put.json()["id"]
    # Each node answers the read from its own replica when asked for consistency ONE on that node.
    for name in WEAVIATE:
        url = f"http://{fleet.machines[name].address}:8080/v1/objects/Probe/{object_id}?consistency_level=ALL"
        got = httpx.get(url, headers=headers, timeout=30)
        assert got.status_code == 200 and got.json()["properties"]["text"] == "replicated", (name, got.text)


def test_prometheus_scrapes_the_cluster(deployment: dict) -> None:
    fleet = deployment["fleet"]
    base = f"http://{fleet.machines['monitoring-0'].address}:9090"
    deadline = time.monotonic() + 120
    weaviate: list[dict] = []
    runner: list[dict] = []
    while time.monotonic() < deadline:
        active = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        weaviate = [t for t in active if t["labels"]["job"] == "weaviate"]
        runner = [t for t in active if t["labels"]["job"] == "tqa-runner"]
        if len(weaviate) == 3 and all(t["health"] == "up" for t in weaviate + runner) and len(runner) == 1:
            break
        time.sleep(1)
    assert len(weaviate) == 3 and all(t["health"] == "up" for t in weaviate), json.dumps(weaviate)[:2000]
    # The Qwen runner on the GPU node, through the overlay.
    if not (len(runner) == 1 and runner[0]["health"] == "up"):
        gpu = [
            f"{t['labels']['job']} {t['health']} {t['lastError']}" for t in active if "203.0.113.129" in t["scrapeUrl"]
        ]
        why = fleet.ssh("gpu-0", "ss -ltnp; ip -brief addr; journalctl -u tqa-qwen-runner -n 8 --no-pager")
        raise AssertionError(f"{gpu}\n{why.stdout[-4000:]}{why.stderr[-500:]}")
    # The alert rules are the files ops/monitoring/rules holds (and `promtool test rules` tests), all of them loaded.
    groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    expected = {
        r["alert"]
        for f in (ROOT / "ops" / "monitoring" / "rules").glob("*.yml")
        if not f.name.endswith(".test.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
    }
    assert {"WeaviateNodeDown", "TqaRunnerDown"} <= expected and loaded == expected, sorted(loaded ^ expected)


def test_the_tunnel_carries_traffic_between_every_spoke_and_the_hub(deployment: dict) -> None:
    fleet = deployment["fleet"]
    hub = "203.0.113.129"
    for name in ["monitoring-0", *WEAVIATE, "mlflow-0"]:
        ping = fleet.ssh(name, f"ping -c 1 -W 3 {hub}")
        assert ping.returncode == 0, (name, ping.stdout, ping.stderr)
    peers = fleet.ssh("gpu-0", "wg show wg0 latest-handshakes").stdout.split("\n")
    assert len([line for line in peers if line.strip() and not line.strip().endswith("\t0")]) == 5, peers
    # The private key never left the host: the configuration names only public keys.
    config = fleet.ssh("gpu-0", "cat /etc/wireguard/wg0.conf").stdout
    private = fleet.ssh("gpu-0", "cat /etc/wireguard/private.key").stdout.strip()
    assert private
    assert private not in config and config.count("[Peer]") == 5


def test_mlflow_runs_on_postgresql_behind_a_login(deployment: dict) -> None:
    fleet = deployment["fleet"]
    base = f"http://{fleet.machines['mlflow-0'].address}:5000"
    search = f"{base}/api/2.0/mlflow/experiments/search?max_results=10"
    assert httpx.get(search, timeout=30).status_code == 401
    assert httpx.get(search, auth=("admin", "not-the-password"), timeout=30).status_code == 401
    auth = ("admin", deployment["mlflow_admin"])
    created = httpx.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "probe"}, auth=auth, timeout=30)
    assert created.status_code == 200, created.text
    stored = fleet.ssh("mlflow-0", 'sudo -u postgres psql -d mlflow -tAc "select name from experiments"')
    assert "probe" in stored.stdout.split(), stored.stdout + stored.stderr
    state = fleet.ssh("mlflow-0", "systemctl is-active mlflow postgresql")
    assert state.stdout.split() == ["active", "active"], state.stdout


def test_a_gpu_node_without_a_gpu_is_refused_in_one_sentence(deployment: dict) -> None:
    said: list[str] = []
    with pytest.raises(UserError, match="failed on gpu-0"):
        # The nvidia play alone (site.yml under --limit would lack the other WireGuard peers' keys).
        deployment["run"](playbook="nvidia.yml", extravars={"nvidia_require_gpu": True}, say=said.append)
    refusal = [line for line in said if line.startswith("gpu-0: Refuse a GPU node")]
    assert refusal and "shows no GPU" in refusal[0] and "CUDA image" in refusal[0], said[-5:]
    recorded = deployment["fleet"].ssh("gpu-0", "grep -vc '^#' /etc/tqa-gpus.txt")
    assert recorded.stdout.strip() == "0"


def test_the_rag_service_answers_from_the_three_node_cluster(deployment: dict) -> None:
    fleet = deployment["fleet"]
    state = fleet.ssh("gpu-0", "systemctl is-active tqa-ingest tqa-qwen-runner tqa-rag")
    assert state.stdout.split() == ["active"] * 3, state.stdout + state.stderr
    # The ingest job wrote the collection with a copy on every node.
    headers = {"Authorization": f"Bearer {deployment['api_key']}"}
    base = f"http://{fleet.machines['weaviate-0'].address}:8080"
    schema = httpx.get(f"{base}/v1/schema/Chunk", headers=headers, timeout=30)
    assert schema.status_code == 200, schema.text
    assert schema.json()["replicationConfig"]["factor"] == 3
    service = f"http://{fleet.machines['gpu-0'].address}:3000"
    assert httpx.get(f"{service}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{service}/readyz", timeout=30).status_code == 200
    question = {"question": "How is RMS normalization implemented in Llama?"}
    asked = httpx.post(f"{service}/ask", json=question, timeout=120)
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert not body["abstained"], body
    # Cited from the corpus the ingest job indexed (paths relative to the directory it was given).
    cited = [s["path"] for s in body["sources"] if s["symbol"] == "LlamaRMSNorm"]
    assert cited and all(path.endswith("models/llama/modeling_llama.py") for path in cited), body["sources"]
