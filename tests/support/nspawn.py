"""Throwaway Debian 12 machines that boot systemd under systemd-nspawn, reached by Ansible over SSH like VMs.

Every machine boots the root file system scripts/infra/build-target-rootfs.sh builds (with systemd, D-Bus and
OpenSSH), unpacked once and shared read-only, with `systemd-nspawn --boot --volatile=overlay`: what a machine writes
goes to a tmpfs of its own and is gone at power-off. Each runs in a network namespace of its own, joined to a host-
only bridge with a documentation-range address (RFC 5737: never routed, reachable from nothing but this host). The
test's SSH key is authorised for root; each machine's host key is generated here and written to a known_hosts file,
so Ansible checks host keys as in production. Needs root and the systemd-container package.
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
    binds: list[str] = field(default_factory=list)


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


def _shared_root() -> Path:
    """The tarball unpacked once (per tarball) beside it, prepared for booting: networkd on, no host keys or
    hostname of its own, this host's certificate authorities. Machines only read it."""
    root = TARBALL.with_suffix(".d")
    stamp = root / ".unpacked-from"
    if stamp.is_file() and stamp.read_text() == str(TARBALL.stat().st_mtime_ns):
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    with tarfile.open(TARBALL) as tar:
        # Our own tarball, extracted as is (device nodes, owners). `filter` arrived in Python 3.11.4; Debian 12's
        # python3 is 3.11.2, whose extraction is this one without the argument.
        trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        tar.extractall(root, **trusted)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/network/10-host0.network").touch()
    (root / "etc/apt/apt.conf.d/01proxy").touch()
    (root / "etc/hostname").unlink(missing_ok=True)
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    (root / "etc/ssh/ssh_host_ed25519_key").touch(mode=0o600)
    (root / "etc/ssh/ssh_host_ed25519_key.pub").touch()
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    (root / "root/.ssh/authorized_keys").touch()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").touch()
    # The machines trust what this host trusts (here, a TLS-inspecting egress proxy's authority).
    extra_cas = Path("/usr/local/share/ca-certificates")
    if extra_cas.is_dir():
        shutil.copytree(extra_cas, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
    stamp.write_text(str(TARBALL.stat().st_mtime_ns))
    return root


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def boot(names: list[str], base: Path, tun: bool = True, binds: dict[str, dict[Path, str]] | None = None) -> Fleet:
    """Unpack, configure and boot one machine per name; returns when every machine's sshd answers.

    `binds`: per machine name, host paths shown read-only at the given paths inside it (what the host lends a
    machine that cannot download it: a dependency tree, a corpus, a model).
    """
    fleet = Fleet(base=base)
    try:
        _boot(fleet, names, tun, binds or {})
    except BaseException:
        shutdown(fleet)
        raise
    return fleet


def _boot(fleet: Fleet, names: list[str], tun: bool, extra_binds: dict[str, dict[Path, str]]) -> None:
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
    lower = _shared_root()
    # debootstrap writes no /etc/hosts, so `localhost` would not resolve (a cloud image has one): each machine gets
    # its own, bound over this mount point.
    (lower / "etc/hosts").touch()
    known = []
    for index, name in enumerate(names):
        own = base / name
        own.mkdir()
        address = str(hosts[10 + index])
        (own / "10-host0.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{SUBNET.prefixlen}\nLinkLocalAddressing=no\n"
        )
        (own / "01proxy").write_text(
            f'Acquire::http::Proxy "{fleet.proxy.url}";\nAcquire::https::Proxy "{fleet.proxy.url}";\n'
        )
        shutil.copyfile(fleet.ssh_key.with_suffix(".pub"), own / "authorized_keys")
        (own / "hosts").write_text(f"127.0.0.1\tlocalhost\n{address}\t{name}\n::1\tlocalhost ip6-localhost\n")
        # Each machine gets a host key of its own, and the controller knows it before the first connection.
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own / "ssh_host_ed25519_key"))
        key = (own / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.append(f"{address} {' '.join(key)}")
        binds = {
            own / "10-host0.network": "/etc/systemd/network/10-host0.network",
            own / "01proxy": "/etc/apt/apt.conf.d/01proxy",
            own / "authorized_keys": "/root/.ssh/authorized_keys",
            own / "hosts": "/etc/hosts",
            own / "ssh_host_ed25519_key": "/etc/ssh/ssh_host_ed25519_key",
            own / "ssh_host_ed25519_key.pub": "/etc/ssh/ssh_host_ed25519_key.pub",
            Path("/etc/resolv.conf").resolve(): "/etc/resolv.conf",
            **extra_binds.get(name, {}),
        }
        machine = Machine(name=name, root=lower, address=address, log=base / f"{name}.boot.log")
        machine.binds = [f"--bind-ro={src}:{dst}" for src, dst in binds.items()]
        fleet.machines[name] = machine
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
            # One read-only tree for every machine; each writes to a tmpfs of its own, gone at power-off.
            f"--directory={machine.root}",
            "--volatile=overlay",
            f"--machine={machine.name}",
            f"--hostname={machine.name}",
            *machine.binds,
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
            machine.process.wait(timeout=30)
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
