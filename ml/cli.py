"""`tqa` commands of the ml stages: setup, ingest, search, ask, eval, status."""

from __future__ import annotations

import typer
from rich.console import Console

from ml.settings import Settings

app = typer.Typer()
console = Console(stderr=True)


@app.command()
def setup() -> None:
    """Provide the Weaviate server binary for embedded mode (download, or build from the Go module proxy)."""
    from ml.index.server_binary import ensure_weaviate_binary

    ensure_weaviate_binary(Settings(), say=console.print)
