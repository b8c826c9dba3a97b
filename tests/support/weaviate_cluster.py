"""A real three-node Weaviate cluster on 127.0.0.1 (the recipe in WEAVIATE.md), for fault tests and benchmarks.

Each node is the pinned server binary with its own data dir and free ports; API-key auth on, anonymous access off,
as production runs it. Nodes can be killed with SIGKILL and restarted on the same ports and data.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ml.settings import Settings
from tests.support.ports import free_port_range

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


def _answers_ready(node: Node) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{node.http_port}/v1/.well-known/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


PORTS_PER_NODE = 7  # HTTP, gRPC, gossip, data (gossip + 1), Raft, Raft RPC (Raft + 1), profiling


class WeaviateCluster:
    """Three (or `size`) nodes joined by gossip and Raft; `start()` returns once every node is ready.

    Ports come from below Linux's ephemeral range (`free_port_range`): a node restarted minutes after a kill binds
    the same ports again, and an outgoing connection must not have taken one as its source port meanwhile.
    """

    def __init__(self, base: Path, size: int = 3, settings: Settings | None = None):
        self.binary = (settings or Settings()).weaviate_binary
        if not self.binary.exists():
            raise RuntimeError(f"The Weaviate server binary is missing ({self.binary}); run `make setup` first.")
        self.nodes: list[Node] = []
        for i in range(size):
            data = base / f"node{i}"
            data.mkdir(parents=True, exist_ok=True)
            self.nodes.append(Node(f"weaviate-{i}", 0, 0, 0, 0, data_dir=data, log=base / f"node{i}.log"))
            self.nodes[i].env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CLUSTER_HOSTNAME": self.nodes[i].name,
                "CLUSTER_IN_LOCALHOST": "true",
                "PERSISTENCE_DATA_PATH": str(data),
                "RAFT_BOOTSTRAP_EXPECT": str(size),
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
        self._assign_ports()

    def _assign_ports(self) -> None:
        """A fresh run of free ports for every node, written into the nodes' environments (other entries kept)."""
        base = free_port_range(PORTS_PER_NODE * len(self.nodes))
        for i, node in enumerate(self.nodes):
            p = base + PORTS_PER_NODE * i
            node.http_port, node.grpc_port, node.gossip_port, node.raft_port = p, p + 1, p + 2, p + 4
            node.env |= {
                "CLUSTER_GOSSIP_BIND_PORT": str(p + 2),
                "CLUSTER_DATA_BIND_PORT": str(p + 3),
                "RAFT_PORT": str(p + 4),
                "RAFT_INTERNAL_RPC_PORT": str(p + 5),
                "PROFILING_PORT": str(p + 6),
                "GRPC_PORT": str(p + 1),
            }
        raft_join = ",".join(f"{n.name}:{n.raft_port}" for n in self.nodes)
        for i, node in enumerate(self.nodes):
            node.env["RAFT_JOIN"] = raft_join
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
            if _answers_ready(node):
                return time.monotonic() - started
            time.sleep(0.25)
        raise RuntimeError(f"{node.name} not ready after {timeout} s: {node.log.read_text()[-2000:]}")

    def _logs(self) -> str:
        return "\n".join(f"--- {n.name}:\n{n.log.read_text()[-1500:] if n.log.exists() else ''}" for n in self.nodes)

    def _start_once(self, timeout: float) -> None:
        """Start every node and wait for all of them together: a node that exits fails the start at once (a node
        waiting for a Raft leader would otherwise wait out the timeout), with every node's log tail."""
        for i in range(len(self.nodes)):
            self.start_node(i)
        waiting, started = set(range(len(self.nodes))), time.monotonic()
        while waiting and time.monotonic() - started < timeout:
            for i in sorted(waiting):
                node = self.nodes[i]
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"{node.name} exited while the cluster started:\n{self._logs()}")
                if _answers_ready(node):
                    waiting.discard(i)
            time.sleep(0.25)
        if waiting:
            names = ", ".join(self.nodes[i].name for i in sorted(waiting))
            raise RuntimeError(f"{names} not ready {timeout} s after the cluster started:\n{self._logs()}")

    def start(self, timeout: float = 120.0) -> None:
        """Start the cluster; if it does not form (a node exits, or no Raft leader in `timeout`), start it once more
        from empty data on fresh ports, and say so. What the tests exercise starts after this point."""
        try:
            self._start_once(timeout)
        except RuntimeError as first:
            self.stop()
            warnings.warn(f"The Weaviate cluster did not form; starting it again on fresh ports. {first}", stacklevel=2)
            for node in self.nodes:
                shutil.rmtree(node.data_dir, ignore_errors=True)
                node.data_dir.mkdir(parents=True)
                node.log.unlink(missing_ok=True)
            self._assign_ports()
            self._start_once(timeout)

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
