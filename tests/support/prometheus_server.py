"""A real Prometheus (built by `make release-tools` into ~/.cache/tqa-tools) scraping given targets, for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from ml.net import wait_until_ready
from tests.support.ports import free_port

TOOLS_BIN = Path(os.environ.get("TQA_TOOLS_DIR", Path.home() / ".cache" / "tqa-tools")) / "bin"


def prometheus_binary() -> Path:
    """The Prometheus binary; a clear error naming the make target when it is missing."""
    found = TOOLS_BIN / "prometheus"
    if found.exists():
        return found
    on_path = shutil.which("prometheus")
    if on_path:
        return Path(on_path)
    raise RuntimeError(f"No prometheus in {TOOLS_BIN} or on PATH; run `make release-tools`.")


class Prometheus:
    """Prometheus on a free 127.0.0.1 port, scraping `targets` (job tqa-serving) and any other `jobs` (name ->
    targets, named as the monitoring role names its scrape jobs) every 2 s, and loading `rule_files`."""

    def __init__(
        self,
        directory: Path,
        targets: list[str],
        rule_files: list[Path] = (),  # type: ignore[assignment]
        jobs: dict[str, list[str]] | None = None,
    ):
        self.directory = directory
        self.port = free_port()
        rules = "".join(f"  - {p.resolve()}\n" for p in rule_files)
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(repr(t) for t in hosts)}]\n"
            for job, hosts in {"tqa-serving": targets, **(jobs or {})}.items()
            if hosts
        )
        (directory / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + f"scrape_configs:\n{scrape}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        log = self.directory / "prometheus.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [
                    str(prometheus_binary()),
                    f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_ready(f"{self.url}/-/ready", 60, self.process, log)
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant-query result of `expr`; raises with Prometheus' error when it does not parse or evaluate."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr!r}: {body.get('error')}")
        return body["data"]["result"]

    def rules(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
