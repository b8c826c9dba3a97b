"""HAProxy in front of the two serving slots: config from haproxy.cfg.j2, weights changed over its admin socket."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ml.errors import UserError

TEMPLATE = Path(__file__).with_name("haproxy.cfg.j2")
BACKEND = "tqa"


@dataclass
class Slot:
    name: str
    address: str
    weight: int
    maintenance: bool


def render(slots: list[Slot], bind_port: int, admin_socket: Path, pid_file: Path, check_interval_ms: int = 500) -> str:
    """The HAProxy configuration for `slots`."""
    import jinja2

    template = jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return template.render(
        slots=slots,
        bind_host="127.0.0.1",
        bind_port=bind_port,
        admin_socket=str(admin_socket),
        pid_file=str(pid_file),
        check_interval_ms=check_interval_ms,
    )


def atomic_write(path: Path, text: str) -> None:
    """Write `text` so a reader (or a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Haproxy:
    """One HAProxy process whose files live in `directory`; started once, then steered at run time."""

    def __init__(self, directory: Path, bind_port: int):
        self.directory, self.bind_port = directory, bind_port
        self.config = directory / "haproxy.cfg"
        self.socket = directory / "haproxy.sock"
        self.pid_file = directory / "haproxy.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bind_port}"

    def write_config(self, slots: list[Slot]) -> None:
        """Keep the file in step with the runtime weights, so a restart comes up with the same split."""
        atomic_write(self.config, render(slots, self.bind_port, self.socket, self.pid_file))

    def running(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def start(self, slots: list[Slot], timeout_s: float = 10.0) -> None:
        """Start HAProxy with `slots` unless it already runs; a clear error if it does not come up."""
        if self.running():
            return
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise UserError("HAProxy is not installed; run `make release-tools` (installs the Debian package).")
        self.write_config(slots)
        check = subprocess.run([binary, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise UserError(f"HAProxy refuses its configuration {self.config}: {check.stderr.strip()}")
        self.socket.unlink(missing_ok=True)
        result = subprocess.run([binary, "-D", "-f", str(self.config)], capture_output=True, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.1)
        raise UserError(
            f"HAProxy did not come up on 127.0.0.1:{self.bind_port} ({result.stderr.strip() or 'no output'})."
        )

    def stop(self) -> None:
        if self.pid_file.exists():
            try:
                os.kill(int(self.pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            self.pid_file.unlink(missing_ok=True)

    def command(self, line: str) -> str:
        """One runtime API command over the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def apply(self, slots: list[Slot]) -> None:
        """Move the running proxy to `slots`' weights and states (no reload: in-flight requests finish).

        Slots that take traffic go first, the heaviest first, each given its weight before it leaves maintenance;
        only then do weights fall and slots drain. So no command leaves the proxy without a ready server of weight
        above 0 (a canary step to 100% otherwise zeroes production while the canary is still in maintenance, and
        a request arriving in between gets a 503).
        """
        for slot in sorted(slots, key=lambda s: (s.maintenance, -s.weight)):
            self._run(f"set weight {BACKEND}/{slot.name} {slot.weight}")
            self._run(f"set server {BACKEND}/{slot.name} state {'maint' if slot.maintenance else 'ready'}")
        self.write_config(slots)

    def _run(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer:
            raise UserError(f"HAProxy refused `{line}`: {answer}")

    def weights(self) -> dict[str, tuple[int, bool]]:
        """Per slot: the runtime weight and whether it is in maintenance, as the proxy sees it now."""
        out: dict[str, tuple[int, bool]] = {}
        for line in self.command("show stat").splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split(",")
            if fields[0] == BACKEND and fields[1] not in ("FRONTEND", "BACKEND"):
                out[fields[1]] = (int(fields[18] or 0), fields[17].startswith("MAINT"))
        return out
