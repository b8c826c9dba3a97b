"""Provides the Weaviate server binary where the client's embedded mode looks for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ml.settings import Settings

WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"


class BinaryUnavailable(RuntimeError):
    """Neither the release download nor a build from the Go module proxy produced a server binary."""


def _download(settings: Settings) -> None:
    """The weaviate client's own download of the release archive (needs GitHub)."""
    import socket

    from weaviate.embedded import EmbeddedOptions, EmbeddedV4

    options = EmbeddedOptions(
        binary_path=str(settings.binary_dir),
        version=settings.weaviate_version,
        persistence_data_path=str(settings.weaviate_data_dir),
    )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        EmbeddedV4(options).ensure_weaviate_binary_exists()
    finally:
        socket.setdefaulttimeout(previous)


def _go_build(settings: Settings, target: Path) -> None:
    """Build the same server from the Go module proxy: pure Go, no cgo."""
    go = shutil.which("go")
    if go is None:
        raise BinaryUnavailable(
            "Weaviate could not be downloaded and Go is not installed; install Go 1.24+ and run `make setup` again."
        )
    with tempfile.TemporaryDirectory(prefix="tqa-weaviate-") as gobin:
        env = dict(os.environ, CGO_ENABLED="0", GOBIN=gobin, GOFLAGS="-buildvcs=false")
        result = subprocess.run(
            [go, "install", f"{WEAVIATE_MODULE}@v{settings.weaviate_version}"],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BinaryUnavailable(
                f"`go install {WEAVIATE_MODULE}@v{settings.weaviate_version}` failed:\n{result.stderr[-2000:]}"
            )
        built = Path(gobin) / "weaviate-server"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copy2(built, partial)
        partial.chmod(0o755)
        partial.replace(target)


def ensure_weaviate_binary(settings: Settings, say: Callable[[str], None] = print) -> Path:
    """Make sure the pinned Weaviate server binary exists; return its path.

    Skips when present, tries the release download (the normal path for online users), and falls back to building
    from the Go module proxy, reporting which happened and how long it took.
    """
    target = settings.weaviate_binary
    if target.exists():
        say(f"Weaviate v{settings.weaviate_version} binary already present: {target}")
        return target
    started = time.monotonic()
    try:
        _download(settings)
        say(f"Downloaded Weaviate v{settings.weaviate_version} in {time.monotonic() - started:.0f} s: {target}")
        return target
    except Exception as exc:  # any network failure means: build it instead
        say(f"Release download unavailable ({type(exc).__name__}); building from the Go module proxy instead.")
    started = time.monotonic()
    _go_build(settings, target)
    say(
        f"Built Weaviate v{settings.weaviate_version} with `go install` in {time.monotonic() - started:.0f} s: {target}"
    )
    return target
