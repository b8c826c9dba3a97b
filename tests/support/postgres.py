"""A throwaway PostgreSQL server from Debian's binaries, in a temporary directory on 127.0.0.1, for tests.

PostgreSQL refuses to run as root, so under root the cluster is created and run as the `postgres` user the Debian
package adds (its files in a directory that user owns).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

DATABASE = "mlflow"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None when no server is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class Postgres:
    """A PostgreSQL cluster in `directory`, listening on 127.0.0.1:`port`, with an empty database `mlflow`."""

    def __init__(self, directory: Path, port: int):
        found = bin_dir()
        if found is None:
            raise RuntimeError("No PostgreSQL server is installed; run `make release-tools`.")
        self.bin, self.directory, self.port = found, directory, port
        self.data = directory / "data"

    @property
    def uri(self) -> str:
        """SQLAlchemy URI of the `mlflow` database (psycopg 3, as the MLflow role deploys it)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> Postgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
