"""`tqa ct run|status`: continuous training, one cycle at a time, and which trigger is close to firing."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ml.settings import Settings
from ops.cli._io import console, print_json

ConfigOpt = Annotated[Path | None, typer.Option(help="CT YAML (see ops/ct/ct.yaml; default: its values).")]


def run(
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="Run the cycle even when no trigger fires.")] = False,
    sync_path: Annotated[
        Path | None, typer.Option(help="A Transformers checkout to sync first (overrides the config's sync_path).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cycle report as JSON.")] = False,
) -> None:
    """One cycle: sync, new dataset version, retrain what fired, evaluate, register through the gate, canary."""
    from ops.ct.config import load_ct_config
    from ops.ct.cycle import run_cycle

    # MLflow writes "View run" links to stdout; they go with the progress, so stdout holds only the result.
    with contextlib.redirect_stdout(sys.stderr):
        cfg = load_ct_config(config)
        if sync_path is not None:
            cfg = cfg.model_copy(update={"sync_path": sync_path})
        report = run_cycle(Settings(), cfg, force=force, say=console.print)
    if as_json:
        print_json(report, indent=2)
    console.print(f"Cycle {report['decision']} in {report['seconds']} s ({report['reason']}).")
    if report["decision"] == "refused":
        raise typer.Exit(1)


def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Each trigger against its threshold, the current dataset version and the last cycle's decision."""
    from ops.ct.config import load_ct_config
    from ops.ct.cycle import status as ct_status

    report = ct_status(Settings(), load_ct_config(config))
    if as_json:
        print_json(report, indent=2)
        return
    for t in report["triggers"]:
        mark = "[red]fires[/]" if t["fired"] else "waits"
        console.print(f"{t['name']:<12} {mark}: {t['detail']} (threshold {t['threshold']:g})")
    dataset = report["dataset"]
    if dataset:
        console.print(
            f"dataset {dataset['dataset_hash'][:16]}: {dataset['records']} pairs, "
            f"{report['dataset_versions']} versions kept"
        )
    else:
        console.print("dataset: no version built by a cycle yet")
    last = report["last_cycle"]
    if last:
        console.print(f"last cycle: {last['decision']} ({last['reason']}), fired: {', '.join(last['fired']) or '-'}")
    else:
        console.print("last cycle: none")
