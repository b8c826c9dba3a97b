"""`tqa train`: fit the learned parts of the pipeline on the configured index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml.settings import Settings
from ops.cli._io import console


def ranker(
    docstrings: Annotated[
        int, typer.Option(help="Docstring-derived training questions besides the dev tuning half.")
    ] = 400,
    out: Annotated[
        Path | None, typer.Option(help="Where to write ranker.json and confidence.json (default: the data dir).")
    ] = None,
) -> None:
    """Train the re-ranker and the calibrated confidence on the tuning half of the dev set (never the test half)."""
    from ml.train.ranker import train_all

    written = train_all(Settings(), out, docstrings, say=console.print)
    console.print(f"[green]Wrote[/] {written / 'ranker.json'} and {written / 'confidence.json'}.")
