"""`tqa` commands of the serving layer."""

from __future__ import annotations

import typer

app = typer.Typer()
