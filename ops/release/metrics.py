"""A Prometheus server scraping both serving slots (config from prometheus.yml.j2), and queries against it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ml.errors import UserError
from ops.release.proxy import Slot, atomic_write

TEMPLATE = Path(__file__).with_name("prometheus.yml.j2")


def render(slots: list[Slot], scrape_interval_s: float) -> str:
    import jinja2

    template = jinja2.Template(TEMPLATE.read_text(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    interval_ms = max(int(scrape_interval_s * 1000), 100)
    return template.render(slots=slots, scrape_interval=f"{interval_ms}ms", scrape_timeout=f"{interval_ms}ms")


def binary() -> Path:
    found = shutil.which("prometheus")
    if found is None:
        raise UserError("Prometheus is not installed; run `make release-tools` (installs the Debian package).")
    return Path(found)


class Prometheus:
    """The HTTP API of a Prometheus server at `url`."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def reachable(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/-/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str) -> float | None:
        """The single value of an instant query; None when the query matches nothing (no data yet)."""
        import httpx

        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise UserError(f"Prometheus at {self.url} did not answer a query ({exc}); is it running?") from exc
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if value != value else value  # NaN (0/0) means no requests in the window

    def targets_up(self) -> dict[str, bool]:
        """Per slot: whether the last scrape succeeded."""
        import httpx

        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        response.raise_for_status()
        return {t["labels"].get("slot", ""): t["health"] == "up" for t in response.json()["data"]["activeTargets"]}


class PrometheusServer:
    """A Prometheus process this machine runs for the release, files in `directory`, listening on `port`."""

    def __init__(self, directory: Path, port: int):
        self.directory, self.port = directory, port
        self.config = directory / "prometheus.yml"
        self.pid_file = directory / "prometheus.pid"
        self.api = Prometheus(f"http://127.0.0.1:{port}")

    def start(self, slots: list[Slot], scrape_interval_s: float, timeout_s: float = 60.0) -> None:
        if self.api.reachable():
            return
        atomic_write(self.config, render(slots, scrape_interval_s))
        log = (self.directory / "prometheus.log").open("ab")
        process = subprocess.Popen(
            [
                str(binary()),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise UserError(f"Prometheus exited at start (code {process.returncode}); see {log.name}.")
            if self.api.reachable():
                return
            time.sleep(0.2)
        raise UserError(f"Prometheus did not come up on 127.0.0.1:{self.port} within {timeout_s:.0f} s.")

    def stop(self) -> None:
        if self.pid_file.exists():
            try:
                os.kill(int(self.pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            self.pid_file.unlink(missing_ok=True)
