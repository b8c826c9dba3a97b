"""`tqa sync` and `tqa watch`: keep the index in step with a checkout's history and its GitHub issues and PRs."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ml.settings import Settings

app = typer.Typer()
console = Console(stderr=True)

PathOpt = Annotated[Path, typer.Option("--path", help="A git checkout of the repository (its history is indexed).")]
GitHubOpt = Annotated[
    bool | None,
    typer.Option("--github/--no-github", help="Also sync issues and PRs (default: when TQA_GITHUB_TOKEN is set)."),
]


def _say(reports) -> None:  # noqa: ANN001
    for r in reports:
        if r.new:
            kind = "force-push, tree diff" if r.force_push else "fast-forward" if r.old else "from scratch"
            console.print(
                f"git {r.old[:12] or '-'} -> {r.new[:12]} ({kind}): +{r.commits_added} -{r.commits_removed} commits, "
                f"{r.files_changed} files re-chunked, {r.files_deleted} deleted, "
                f"{r.chunks_written} chunks written, {r.chunks_deleted} deleted in {r.seconds:.1f} s"
            )
        else:
            console.print(f"github: {r.items_synced} issues/PRs, {r.chunks_written} chunks in {r.seconds:.1f} s")


@app.command()
def sync(
    path: PathOpt,
    rev: Annotated[str, typer.Option(help="The commit to bring the index to.")] = "HEAD",
    github: GitHubOpt = None,
) -> None:
    """Bring the index from its recorded commit to REV: new commits, changed files, issues and PRs since the cursor."""
    from ml.index.sync import open_syncer

    settings = Settings()
    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path, github)
        _say(syncer.run(rev, progress=lambda msg: console.print(msg, style="dim")))


@app.command()
def watch(
    path: PathOpt,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=1)] = 60.0,
    remote: Annotated[str, typer.Option(help="The remote to fetch.")] = "origin",
    branch: Annotated[str, typer.Option(help="The remote branch to follow.")] = "main",
    github: GitHubOpt = None,
    iterations: Annotated[
        int | None, typer.Option(help="Stop after this many polls (default: run until stopped).")
    ] = None,
) -> None:
    """Poll the remote and the API every INTERVAL seconds, sync, and append each change to the staging buffer."""
    from ml.index.sync import open_syncer

    settings = Settings()
    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path, github)
        console.print(f"watching {remote}/{branch} every {interval:.0f} s; changes go to {settings.staging_file}")
        syncer.watch(remote, branch, interval, iterations=iterations, on_report=_say)
