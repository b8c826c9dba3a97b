"""`tqa eval retrieval|run`, `tqa register` and `tqa mlflow up`: the measured, gated path from a change to `staging`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ml.settings import Settings
from ops.cli._io import console, print_json


def retrieval(
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
        print_json(report)
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


def run(
    dataset: Annotated[
        Path | None, typer.Option(help="Dataset directory (default: <data dir>/dataset when it exists).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Eval YAML (default: the packaged ml/eval/eval.yaml).")] = None,
    sample: Annotated[int | None, typer.Option(help="Generated pairs to sample (overrides the config).")] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory (default: <data dir>/eval).")] = None,
    track: Annotated[bool, typer.Option(help="Log the run, report, dataset and model to MLflow.")] = True,
) -> None:
    """Dev, out-of-scope, injection and generated questions: JSON + Markdown + PNG; exit 1 when a bar is missed."""
    from ml.eval.gate import load_config
    from ml.eval.report import write_report
    from ml.eval.suite import run_eval

    settings = Settings()
    cfg = load_config(config)
    if sample is not None:
        cfg = cfg.model_copy(update={"sample": sample})
    if dataset is None and (settings.data_dir / "dataset" / "manifest.json").exists():
        dataset = settings.data_dir / "dataset"
    report = run_eval(settings, cfg, dataset)
    paths = write_report(report, out or settings.data_dir / "eval")
    if track:
        from ml.tracking.log import log_eval

        run_id = log_eval(settings, report, paths["json"].parent, dataset)
        console.print(f"Logged MLflow run {run_id} to {settings.mlflow_tracking_uri}.")
    print_json(report["metrics"], indent=2)
    console.print(f"Report: {paths['markdown']} ({report['meta']['items']} questions, {report['meta']['seconds']} s)")
    if not report["thresholds"]["passed"]:
        for failure in report["thresholds"]["failures"]:
            console.print(f"[red]Missed:[/] {failure}")
        raise typer.Exit(1)


def register(
    run_id: Annotated[str | None, typer.Option(help="Eval run to register (default: the latest eval run).")] = None,
    config: Annotated[Path | None, typer.Option(help="Eval YAML whose `gate.margins` apply.")] = None,
    version_file: Annotated[
        Path | None, typer.Option(help="Also write the registered version number to this file (CD reads it).")
    ] = None,
) -> None:
    """Register the run's pipeline; move `staging` only when it beats `production` by the gate margins.

    With TQA_BENTO set (the tag `make bento` printed) the version pins that RAG bento.
    """
    from rich.table import Table

    from ml.eval.gate import load_config
    from ml.tracking.registry import register_candidate

    decision = register_candidate(Settings(), load_config(config).gate, run_id)
    if version_file is not None:
        version_file.write_text(decision.version + "\n")
    table = Table(title=f"{decision.model} v{decision.version} vs production v{decision.against or '-'}")
    for column in ("metric", "candidate", "production", "margin", "passed"):
        table.add_column(column)
    for row in decision.rows:
        table.add_row(*(_cell(row[c]) for c in ("metric", "candidate", "production", "margin", "passed")))
    Console().print(table)
    verdict = "[green]accepted: staging ->" if decision.accepted else "[red]refused: staging stays, not"
    console.print(f"{verdict} v{decision.version}[/] ({decision.reason}).")
    if not decision.accepted:
        raise typer.Exit(1)


def mlflow_up(
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: TQA_MLFLOW_PORT, 5000).")] = None,
) -> None:
    """Run an MLflow server on 127.0.0.1 (SQLite backend, artifacts under <data dir>/mlflow) until interrupted."""
    from ml.tracking.server import MlflowServer

    settings = Settings()
    server = MlflowServer(settings.mlflow_dir, port=port or settings.mlflow_port)
    with server:
        console.print(f"MLflow at {server.uri} (data in {settings.mlflow_dir}); Ctrl-C stops it.")
        try:
            assert server.process is not None
            server.process.wait()
        except KeyboardInterrupt:
            pass


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)
