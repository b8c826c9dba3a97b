"""`tqa release deploy|canary|status|rollback|down`: move a registered version staging -> canary -> production."""

from __future__ import annotations

from typing import Annotated

import typer

from ml.errors import UserError
from ml.settings import Settings
from ops.cli._io import console, print_json


def _controller():  # type: ignore[no-untyped-def]
    from ops.release.controller import ReleaseController

    return ReleaseController(Settings(), say=console.print)


def deploy(
    env: Annotated[str, typer.Option(help="staging, canary or production.")],
    version: Annotated[
        str | None, typer.Option(help="Registered version (default: `staging`'s; production keeps its own).")
    ] = None,
) -> None:
    """Start a registered version for an environment and point its MLflow alias at it."""
    _controller().deploy(env, version)


def canary(
    steps: Annotated[str, typer.Option(help="Canary traffic percentages, increasing.")] = "5,25,50,100",
    interval: Annotated[float, typer.Option(help="Seconds each step runs before it is analysed.")] = 60.0,
    promote: Annotated[
        bool, typer.Option(help="Promote when every step passed (--no-promote holds for `tqa release promote`).")
    ] = True,
) -> None:
    """Shift traffic to the canary step by step; any breach rolls back, all steps passed promote it. Resumable."""
    try:
        percentages = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError as exc:
        raise UserError(f"Steps must be comma-separated percentages, e.g. 5,25,50,100 (got '{steps}').") from exc
    outcome = _controller().canary(percentages, interval, promote)
    if outcome == "rolled_back":
        raise typer.Exit(1)


def promote() -> None:
    """Move `production` to a canary that passed every step (after `tqa release canary --no-promote`)."""
    _controller().promote()


def rollback() -> None:
    """Now: 100% back to the last good production and the aliases moved back."""
    _controller().rollback()


def status(as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False) -> None:
    """Who serves what share (recorded and as the proxy sees it), which versions, the last decisions and why."""
    report = _controller().status()
    if as_json:
        print_json(report, indent=2)
        return
    for name, slot in report["slots"].items():
        console.print(
            f"{name}: version {slot['version'] or '-'} ({slot['role']}), weight {slot['weight']}%"
            f"{' maintenance' if slot['maintenance'] else ''}, proxy {slot['proxy']}, answering {slot['answering']}"
        )
    console.print("aliases: " + ", ".join(f"{k}={v or '-'}" for k, v in report["aliases"].items()))
    for event in report["events"]:
        detail = event.get("reason") or event.get("weight") or event.get("env") or ""
        console.print(f"  {event['event']} version {event.get('version', '-')} {detail}")


def down() -> None:
    """Stop this machine's release slots, staging, HAProxy and the local Prometheus."""
    _controller().down()
