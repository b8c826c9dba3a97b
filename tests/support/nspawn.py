"""Throwaway Debian 12 machines that boot systemd under systemd-nspawn, reached by Ansible over SSH like VMs.

Each machine is a fresh copy of the root file system scripts/infra/build-target-rootfs.sh builds (with systemd,
D-Bus and OpenSSH), booted with `systemd-nspawn --boot` in a network namespace of its own, joined to a host-only
bridge with a documentation-range address (RFC 5737: never routed, reachable from nothing but this host). The
test's SSH key is authorised for root; each machine's host key is read from its file system into a known_hosts
file, so Ansible checks host keys as in production. Needs root and the systemd-container package.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops.infra.paths import tools_dir
from tests.support.egress_proxy import EgressProxy

TARBALL = tools_dir() / "debian12-systemd-target.tar"
SUBNET = ipaddress.ip_network("198.51.100.0/24")


def unavailable() -> str | None:
    """Why machines cannot be booted here (one sentence), or None."""
    if os.geteuid() != 0:
        return "booting systemd-nspawn machines needs root (CI runs this test with sudo)."
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn is missing: install Debian's systemd-container package."
    if not TARBALL.is_file():
        return f"{TARBALL} is missing: run `make infra-tools` (scripts/infra/build-target-rootfs.sh)."
    return None


@dataclass
class Machine:
    name: str
    root: Path
    address: str
    process: subprocess.Popen | None = None
    log: Path | None = None


@dataclass
class Fleet:
    """Machines on one bridge; `ssh_key` and `known_hosts` are what Ansible logs in with."""

    base: Path
    machines: dict[str, Machine] = field(default_factory=dict)
    bridge: str = ""
    proxy: EgressProxy | None = None
    ssh_key: Path | None = None
    known_hosts: Path | None = None

    def ssh(self, name: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        machine = self.machines[name]
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.ssh_key),
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                f"root@{machine.address}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def boot(names: list[str], base: Path, tun: bool = True) -> Fleet:
    """Unpack, configure and boot one machine per name; returns when every machine's sshd answers."""
    fleet = Fleet(base=base)
    try:
        _boot(fleet, names, tun)
    except BaseException:
        shutdown(fleet)
        raise
    return fleet


def _boot(fleet: Fleet, names: list[str], tun: bool) -> None:
    base = fleet.base
    fleet.bridge = f"tqab{os.getpid() % 100000}"
    hosts = list(SUBNET.hosts())
    _run("ip", "link", "add", fleet.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{hosts[0]}/{SUBNET.prefixlen}", "dev", fleet.bridge)
    _run("ip", "link", "set", fleet.bridge, "up")
    # The machines' only way out: apt (and pip, given --proxy) through a proxy on the bridge's host address.
    fleet.proxy = EgressProxy(str(hosts[0])).__enter__()
    fleet.ssh_key = base / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fleet.ssh_key))
    known = []
    for index, name in enumerate(names):
        root = base / name
        root.mkdir()
        with tarfile.open(TARBALL) as tar:
            tar.extractall(root, filter="fully_trusted")
        address = str(hosts[10 + index])
        network = root / "etc/systemd/network/10-host0.network"
        network.parent.mkdir(parents=True, exist_ok=True)
        network.write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{SUBNET.prefixlen}\nLinkLocalAddressing=no\n"
        )
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
        (root / "etc/hostname").write_text(f"{name}\n")
        (root / "etc/apt/apt.conf.d/01proxy").write_text(
            f'Acquire::http::Proxy "{fleet.proxy.url}";\nAcquire::https::Proxy "{fleet.proxy.url}";\n'
        )
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text())
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(fleet.ssh_key.with_suffix(".pub").read_text())
        # Each machine gets host keys of its own, and the controller knows them before the first connection.
        for old in (root / "etc/ssh").glob("ssh_host_*"):
            old.unlink()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "etc/ssh/ssh_host_ed25519_key"))
        key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.append(f"{address} {' '.join(key)}")
        fleet.machines[name] = Machine(name=name, root=root, address=address, log=base / f"{name}.boot.log")
    fleet.known_hosts = base / "known_hosts"
    fleet.known_hosts.write_text("\n".join(known) + "\n")
    for machine in fleet.machines.values():
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            f"--directory={machine.root}",
            f"--machine={machine.name}",
            f"--network-bridge={fleet.bridge}",
        ]
        if tun:
            argv.append("--bind=/dev/net/tun")
        with machine.log.open("wb") as out:
            machine.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    for machine in fleet.machines.values():
        _wait_for_ssh(fleet, machine)


def _wait_for_ssh(fleet: Fleet, machine: Machine, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if machine.process is not None and machine.process.poll() is not None:
            raise AssertionError(f"{machine.name} exited while booting: {machine.log.read_text()[-2000:]}")
        try:
            with socket.create_connection((machine.address, 22), timeout=1):
                pass
            if fleet.ssh(machine.name, "true", timeout=10).returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{machine.name} ({machine.address}) did not answer SSH within {timeout_s:.0f} s")


def shutdown(fleet: Fleet) -> None:
    """Power every machine off the way systemd does on SIGTERM to nspawn, then remove the bridge and the copies."""
    for machine in fleet.machines.values():
        if machine.process is not None and machine.process.poll() is None:
            os.killpg(machine.process.pid, signal.SIGTERM)
    for machine in fleet.machines.values():
        if machine.process is None:
            continue
        try:
            machine.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # The machine's init is nspawn's child in a PID namespace of its own: it goes first, then nspawn.
            children = Path(f"/proc/{machine.process.pid}/task/{machine.process.pid}/children")
            for child in children.read_text().split() if children.exists() else []:
                os.kill(int(child), signal.SIGKILL)
            os.killpg(machine.process.pid, signal.SIGKILL)
            machine.process.wait()
    if fleet.proxy is not None:
        fleet.proxy.__exit__(None, None, None)
    if fleet.bridge:
        subprocess.run(["ip", "link", "del", fleet.bridge], capture_output=True)
    for machine in fleet.machines.values():
        shutil.rmtree(machine.root, ignore_errors=True)
