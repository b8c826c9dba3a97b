"""`tqa setup|ingest|status|sync|watch`: build the index and keep it in step with its corpus."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from ml.settings import Settings
from ops.cli._io import console, print_json

PathOpt = Annotated[Path, typer.Option("--path", help="A git checkout of the repository (its history is indexed).")]
GitHubOpt = Annotated[
    bool | None,
    typer.Option("--github/--no-github", help="Also sync issues and PRs (default: when TQA_GITHUB_TOKEN is set)."),
]
RepoUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--repo-url",
        help="Web address for commit and file links, e.g. https://github.com/owner/name "
        "(default: the GitHub origin, else file:// links to the checkout).",
    ),
]


def setup() -> None:
    """Provide the Weaviate server binary for embedded mode (download, or build from the Go module proxy)."""
    from ml.index.server_binary import ensure_weaviate_binary

    ensure_weaviate_binary(Settings(), say=console.print)


def ingest(
    package: Annotated[str, typer.Option(help="Installed Python package to index (its code and docstrings).")] = (
        "transformers"
    ),
    path: Annotated[
        Path | None, typer.Option(help="Index this repository checkout instead (a Transformers clone adds docs/).")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Drop the index and build it again from scratch.")] = False,
    repo_url: RepoUrlOpt = None,
) -> None:
    """Index a corpus; a second run only re-embeds files that changed and deletes chunks of removed files."""
    from ml.pipeline import run_ingest

    report = run_ingest(
        Settings(), package=None if path else package, path=path, rebuild=rebuild, console=console, repo_url=repo_url
    )
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


def status() -> None:
    """What is indexed: corpus, version, counts by kind."""
    from ml.pipeline import index_status

    print_json(index_status(Settings()), indent=2)


def sync(
    path: PathOpt,
    rev: Annotated[str, typer.Option(help="The commit to bring the index to.")] = "HEAD",
    github: GitHubOpt = None,
    repo_url: RepoUrlOpt = None,
) -> None:
    """Bring the index from its recorded commit to REV: new commits, changed files, issues and PRs since the cursor."""
    from ml.pipeline import open_syncer

    with ExitStack() as stack:
        syncer = open_syncer(stack, Settings(), path, github, repo_url=repo_url)
        _say(syncer.run(rev, progress=lambda msg: console.print(msg, style="dim")))


def watch(
    path: PathOpt,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=1)] = 60.0,
    remote: Annotated[str, typer.Option(help="The remote to fetch.")] = "origin",
    branch: Annotated[str, typer.Option(help="The remote branch to follow.")] = "main",
    github: GitHubOpt = None,
    repo_url: RepoUrlOpt = None,
    iterations: Annotated[
        int | None, typer.Option(help="Stop after this many polls (default: run until stopped).")
    ] = None,
) -> None:
    """Poll the remote and the API every INTERVAL seconds, sync, and append each change to the staging buffer."""
    from ml.pipeline import open_syncer

    settings = Settings()
    with ExitStack() as stack:
        syncer = open_syncer(stack, settings, path, github, repo_url=repo_url)
        console.print(f"watching {remote}/{branch} every {interval:.0f} s; changes go to {settings.staging_file}")
        syncer.watch(remote, branch, interval, iterations=iterations, on_report=_say)


def _say(reports: Any) -> None:
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
