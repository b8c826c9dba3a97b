"""A real three-node Weaviate cluster on 127.0.0.1 (the recipe in WEAVIATE.md), for fault tests and benchmarks.

Each node is the pinned server binary with its own data dir and free ports; API-key auth on, anonymous access off,
as production runs it. Nodes can be killed with SIGKILL and restarted on the same ports and data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ml.settings import Settings
from tests.support.ports import free_port

API_KEY = "cluster-test-key"


@dataclass
class Node:
    name: str
    http_port: int
    grpc_port: int
    gossip_port: int
    raft_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _consecutive_free_pair() -> int:
    """A port p with p and p + 1 free (Weaviate wants data = gossip + 1 and Raft RPC = Raft + 1)."""
    import socket

    for _ in range(200):
        p = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports found")


class WeaviateCluster:
    """Three (or `size`) nodes joined by gossip and Raft; `start()` returns once every node is ready."""

    def __init__(self, base: Path, size: int = 3, settings: Settings | None = None):
        self.binary = (settings or Settings()).weaviate_binary
        if not self.binary.exists():
            raise RuntimeError(f"The Weaviate server binary is missing ({self.binary}); run `make setup` first.")
        self.nodes: list[Node] = []
        used: set[int] = set()
        for i in range(size):
            while True:
                ports = [free_port(), free_port(), _consecutive_free_pair(), _consecutive_free_pair()]
                flat = {ports[0], ports[1], ports[2], ports[2] + 1, ports[3], ports[3] + 1}
                if len(flat) == 6 and not flat & used:
                    used |= flat
                    break
            data = base / f"node{i}"
            data.mkdir(parents=True, exist_ok=True)
            self.nodes.append(Node(f"weaviate-{i}", *ports, data_dir=data, log=base / f"node{i}.log"))
        raft_join = ",".join(f"{n.name}:{n.raft_port}" for n in self.nodes)
        for i, node in enumerate(self.nodes):
            node.env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CLUSTER_HOSTNAME": node.name,
                "CLUSTER_IN_LOCALHOST": "true",
                "PERSISTENCE_DATA_PATH": str(node.data_dir),
                "CLUSTER_GOSSIP_BIND_PORT": str(node.gossip_port),
                "CLUSTER_DATA_BIND_PORT": str(node.gossip_port + 1),
                "RAFT_PORT": str(node.raft_port),
                "RAFT_INTERNAL_RPC_PORT": str(node.raft_port + 1),
                "RAFT_JOIN": raft_join,
                "RAFT_BOOTSTRAP_EXPECT": str(size),
                "GRPC_PORT": str(node.grpc_port),
                "PROFILING_PORT": str(free_port()),
                "DISABLE_TELEMETRY": "true",
                "ENABLE_MODULES": "",
                "DEFAULT_VECTORIZER_MODULE": "none",
                "LOG_LEVEL": "warning",
                "QUERY_DEFAULTS_LIMIT": "20",
                "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
                "AUTHENTICATION_APIKEY_ENABLED": "true",
                "AUTHENTICATION_APIKEY_ALLOWED_KEYS": API_KEY,
                "AUTHENTICATION_APIKEY_USERS": "admin",
            }
            if i > 0:
                node.env["CLUSTER_JOIN"] = f"localhost:{self.nodes[0].gossip_port}"

    def start_node(self, i: int) -> None:
        node = self.nodes[i]
        with node.log.open("a") as out:
            node.process = subprocess.Popen(
                [str(self.binary), "--host", "127.0.0.1", "--port", str(node.http_port), "--scheme", "http"],
                env=node.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, i: int, timeout: float = 120.0) -> float:
        """Seconds until node i answers ready (raises with its log tail if it dies or times out)."""
        node = self.nodes[i]
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {node.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{node.http_port}/v1/.well-known/ready", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{node.name} not ready after {timeout} s: {node.log.read_text()[-2000:]}")

    def start(self, timeout: float = 120.0) -> None:
        for i in range(len(self.nodes)):
            self.start_node(i)
        for i in range(len(self.nodes)):
            self.wait_ready(i, timeout)

    def kill(self, i: int) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        node = self.nodes[i]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def client(self, i: int = 0) -> Any:
        """A weaviate client (API key) connected to node i; the caller closes it."""
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        node = self.nodes[i]
        return weaviate.connect_to_custom(
            http_host="127.0.0.1",
            http_port=node.http_port,
            http_secure=False,
            grpc_host="127.0.0.1",
            grpc_port=node.grpc_port,
            grpc_secure=False,
            auth_credentials=Auth.api_key(API_KEY),
            additional_config=AdditionalConfig(timeout=Timeout(init=30, query=30, insert=60)),
        )

    def object_counts(self, collection: str) -> dict[str, int]:
        """Objects each node holds for `collection` (its shard replicas), from the nodes API of a live node."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            response = httpx.get(
                f"http://127.0.0.1:{node.http_port}/v1/nodes/{collection}",
                params={"output": "verbose"},
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=10,
            )
            response.raise_for_status()
            return {
                n["name"]: sum(int(s.get("objectCount", 0)) for s in n.get("shards") or [])
                for n in response.json()["nodes"]
            }
        raise RuntimeError("no live node")

    def __enter__(self) -> WeaviateCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
