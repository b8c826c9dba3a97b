"""`tqa` commands of the ml stages: setup, ingest, search, ask, status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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


@app.command()
def ingest(
    package: Annotated[str, typer.Option(help="Installed Python package to index (its code and docstrings).")] = (
        "transformers"
    ),
    path: Annotated[
        Path | None, typer.Option(help="Index this repository checkout instead (a Transformers clone adds docs/).")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Drop the index and build it again from scratch.")] = False,
) -> None:
    """Index a corpus; a second run only re-embeds files that changed and deletes chunks of removed files."""
    from ml.pipeline import run_ingest

    report = run_ingest(Settings(), package=None if path else package, path=path, rebuild=rebuild, console=console)
    commits = ""
    if report.commits_added or report.commits_removed:
        commits = f" and {report.commits_added} commits ({report.commits_removed} no longer in the history)"
    console.print(
        f"[green]Indexed[/] {report.files_seen} files ({report.files_changed} changed, {report.files_deleted} "
        f"removed){commits}: {report.chunks_written} chunks written, {report.chunks_deleted} deleted, "
        f"{report.total_chunks} in the index, in {report.seconds:.1f} s ({report.chunks_per_second:.0f} chunks/s)."
    )
    for label, items in (
        ("not UTF-8 (indexed with replacement characters)", report.non_utf8),
        ("unparsable Python (indexed as plain text)", report.unparsable),
        ("unreadable (skipped)", report.unreadable),
    ):
        if items:
            console.print(f"{len(items)} files {label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")


@app.command()
def status() -> None:
    """What is indexed: corpus, version, counts by kind."""
    from ml.pipeline import index_status

    console.print_json(json.dumps(index_status(Settings())))


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


eval_app = typer.Typer(help="Measure retrieval and answers on question sets.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    queries: Annotated[
        Path | None, typer.Option(help='JSONL of {"id", "question", "path", "symbol"} (default: the dev set).')
    ] = None,
    docstrings: Annotated[int, typer.Option(help="Also evaluate N automatic docstring-derived questions.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Recall@1/5/10 and MRR@10 at file and symbol level, beside plain BM25 (whole files and per symbol)."""
    from ml.eval.run import run_retrieval_eval

    report = run_retrieval_eval(Settings(), queries, docstrings)
    if as_json:
        _out(json.dumps(report))
        return
    from rich.table import Table

    for set_name, result in report.items():
        table = Table(title=f"{set_name}: {result['queries']} questions")
        metrics = list(next(iter(result["systems"].values())))
        table.add_column("system")
        for m in metrics:
            table.add_column(m, justify="right")
        for system, values in result["systems"].items():
            table.add_row(system, *(f"{values[m]:.3f}" for m in metrics))
        Console().print(table)
        if result["unresolved"]:
            console.print(f"Gold not found in the corpus for: {', '.join(result['unresolved'])}")
