"""Which embedded Weaviate belongs to which data dir: a data dir owns its server and never writes to another's.

The embedded client connects to whatever answers on its port, so a server started for data dir A would silently
receive data dir B's writes. Each data dir records the server it started (`weaviate.json`: pid, ports, the data
path, the process that started it); a server on the configured ports that is not the recorded one belongs to
someone else, and this data dir's server is started on free ports instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ml.errors import UserError
from ml.settings import Settings


@dataclass(frozen=True)
class ServerRecord:
    pid: int
    owner_pid: int
    http_port: int
    grpc_port: int
    data_path: str
    node: str = ""


def record_file(settings: Settings) -> Path:
    return settings.data_dir / "weaviate.json"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    # A zombie (exited, not yet reaped by its parent) no longer serves anything.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_env(pid: int) -> dict[str, str] | None:
    """The environment a process started with (Linux /proc), or None where it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def processes_with_env(name: str, value: str) -> set[int]:
    """Pids of this user's processes started with `name=value` in their environment (Linux /proc)."""
    needle = f"{name}={value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def data_path(settings: Settings) -> str:
    return str(settings.weaviate_data_dir.resolve())


def read_record(settings: Settings) -> ServerRecord | None:
    try:
        return ServerRecord(**json.loads(record_file(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def node_name(settings: Settings) -> str:
    """The server's cluster node name, fixed per data dir: its Raft state names the node, so a restart under
    another name (the embedded launcher derives it from the HTTP port) never becomes ready."""
    record = read_record(settings)
    if record is not None and record.node and record.data_path == data_path(settings):
        return record.node
    return f"Embedded_at_{settings.weaviate_port}"


def cluster_env(node: str) -> dict[str, str]:
    """Node name and free cluster ports for a single-node embedded server (overriding the launcher's defaults)."""
    from weaviate.embedded import _get_server_ports

    gossip, data, raft, raft_rpc, profiling = _get_server_ports()
    return {
        "CLUSTER_HOSTNAME": node,
        "RAFT_JOIN": f"{node}:{raft}",
        "CLUSTER_GOSSIP_BIND_PORT": str(gossip),
        "CLUSTER_DATA_BIND_PORT": str(data),
        "RAFT_PORT": str(raft),
        "RAFT_INTERNAL_RPC_PORT": str(raft_rpc),
        "PROFILING_PORT": str(profiling),
    }


def write_record(settings: Settings, pid: int, http_port: int, grpc_port: int, node: str) -> None:
    record = ServerRecord(pid, os.getpid(), http_port, grpc_port, data_path(settings), node)
    path = record_file(settings)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(asdict(record)))
    partial.replace(path)
    # The plain pid file stays for scripts and benchmarks that read it.
    (settings.data_dir / "weaviate.pid").write_text(str(pid))


def recorded_server(settings: Settings) -> ServerRecord | None:
    """This data dir's own server if it still runs: the recorded pid is alive and serves this data path."""
    record = read_record(settings)
    if record is None or record.data_path != data_path(settings) or not alive(record.pid):
        return None
    env = process_env(record.pid)
    if env is not None and env.get("PERSISTENCE_DATA_PATH") != record.data_path:
        return None  # the pid was reused by another process
    return record


def choose_ports(settings: Settings) -> tuple[int, int, ServerRecord | None]:
    """(http, grpc, record): this data dir's running server, else free ports for a new one.

    The configured ports are used when free; when a server of another data dir (or anything else) holds them,
    free ports are picked so this data dir gets its own server.
    """
    own = recorded_server(settings)
    if own is not None:
        if port_open(own.http_port) and port_open(own.grpc_port):
            return own.http_port, own.grpc_port, own
        raise UserError(
            f"The Weaviate server of data dir {settings.data_dir} (pid {own.pid}) runs but does not answer on ports "
            f"{own.http_port}/{own.grpc_port}; wait for it to start or stop it with `kill {own.pid}`."
        )
    http, grpc = settings.weaviate_port, settings.weaviate_grpc_port
    if port_open(http) or port_open(grpc):
        http, grpc = free_port(), free_port()
    return http, grpc, None


def stop_orphan(settings: Settings, timeout: float = 30.0) -> int | None:
    """Stop this data dir's server if the process that started it is gone (a crash); returns its pid if stopped."""
    own = recorded_server(settings)
    if own is None or alive(own.owner_pid):
        return None
    terminate(own.pid, timeout)
    record_file(settings).unlink(missing_ok=True)
    return own.pid


def terminate(pid: int, timeout: float = 30.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; a no-op for a process that is already gone."""
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if group:
            try:
                os.killpg(pid, 0)
            except OSError:
                return
        elif not alive(pid):
            return
        time.sleep(0.1)
    try:
        kill(pid, signal.SIGKILL)
    except OSError:
        return
