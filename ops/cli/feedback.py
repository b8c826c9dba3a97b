"""`tqa feedback review|approve|reject|export|stats`: the review queue of corrections people sent from the page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml.settings import Settings
from ops.cli._io import console, out, print_json

# How long `tqa feedback export` waits for a rating or review whose answer's trace the service has not exported yet
# (it batches traces for a few seconds): long enough for that, short enough for a command someone waits on.
EXPORT_PATIENCE_S = 30.0


def _store():  # type: ignore[no-untyped-def]
    from ml.feedback.store import FeedbackStore

    return FeedbackStore(Settings().feedback_db)


def review(
    status: Annotated[str, typer.Option(help="pending, approved or rejected.")] = "pending",
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the queue as JSON lines.")] = False,
) -> None:
    """Corrections waiting for review, each with its question, the answer it corrects and the proposed answer."""
    from ml.errors import UserError

    if status not in ("pending", "approved", "rejected"):
        raise UserError("--status must be pending, approved or rejected.")
    with _store() as store:
        items = store.review_queue(status, limit)  # type: ignore[arg-type]
    if as_json:
        for item in items:
            print_json(item)
        return
    if not items:
        console.print(f"No {status} corrections.")
    for item in items:
        out.print(f"[bold]{item['query_id']}[/]  rated {item['rating']}")
        out.print(f"  question:   {item['question']}", markup=False, highlight=False)
        out.print(f"  answer:     {item['answer']['answer'][:300]}", markup=False, highlight=False)
        if item["comment"]:
            out.print(f"  comment:    {item['comment']}", markup=False, highlight=False)
        out.print(f"  correction: {item['reviewed_answer'] or item['correction']}", markup=False, highlight=False)
    if items and status == "pending":
        console.print("Approve with `tqa feedback approve ID [--answer TEXT]`, reject with `tqa feedback reject ID`.")


def approve(
    query_id: Annotated[str, typer.Argument(help="The query id shown by `tqa feedback review`.")],
    answer: Annotated[str | None, typer.Option(help="An edited answer to keep instead of the proposed one.")] = None,
) -> None:
    """Approve a correction (optionally edited); `tqa feedback export` turns it into a dataset pair."""
    with _store() as store:
        store.decide(query_id, "approved", answer)
    console.print(f"[green]Approved[/] {query_id}.")


def reject(query_id: Annotated[str, typer.Argument(help="The query id shown by `tqa feedback review`.")]) -> None:
    """Reject a correction; it never becomes a dataset pair."""
    with _store() as store:
        store.decide(query_id, "rejected")
    console.print(f"Rejected {query_id}.")


def forward(
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds even if rows are still due.")] = 60.0,
) -> None:
    """Send ratings and reviews waiting in the outbox to MLflow as assessments on their query's trace."""
    from ml.errors import UserError
    from ml.feedback.forward import Forwarder

    settings = Settings()
    with _store() as store:
        forwarder = Forwarder(store, settings.mlflow_tracking_uri)
        if not forwarder.reachable():
            raise UserError(f"MLflow at {settings.mlflow_tracking_uri} did not answer; the outbox keeps everything.")
        counts = forwarder.drain(timeout)
        counts["pending"] = store.outbox_counts()["pending"]
    print_json(counts)


def export(
    path: Annotated[Path | None, typer.Option(help="Also write the pairs to this JSONL file.")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Read approved corrections from the local store instead of MLflow.")
    ] = False,
) -> None:
    """Approved corrections and thumbs-up answers, read from MLflow's traces, as dataset pairs in the staging buffer.

    The outbox is forwarded first, so a review just made is part of the export. `tqa dataset build` adds the staged
    pairs (source kind feedback, id feedback-<query id>) to its training split.
    """
    import json

    from ml.errors import UserError
    from ml.feedback.export import correction_pairs, trace_pairs, write_pairs
    from ml.feedback.forward import Forwarder
    from ml.index.staging import append_pairs, feedback_buffer

    settings = Settings()
    with _store() as store:
        if local:
            pairs = correction_pairs(store)
        else:
            forwarder = Forwarder(store, settings.mlflow_tracking_uri)
            if not forwarder.reachable():
                raise UserError(
                    f"MLflow at {settings.mlflow_tracking_uri} did not answer; start it (or set "
                    "TQA_MLFLOW_TRACKING_URI), or pass --local to export approved corrections from the local store."
                )
            # A review just made may sit behind a rating still in its retry delay: try both now, and give a trace
            # the service has not exported yet a little time to arrive.
            store.expedite()
            forwarder.drain(patience_s=EXPORT_PATIENCE_S)
            waiting = store.outbox_counts()["pending"]
            if waiting:
                console.print(f"[yellow]{waiting} ratings or reviews could not reach MLflow yet; they stay queued.[/]")
            pairs = trace_pairs(settings.mlflow_tracking_uri, settings.trace_experiment)
    buffer = feedback_buffer(settings.staging_file)
    staged = append_pairs(buffer, {p.id.removeprefix("feedback-"): p.model_dump(mode="json") for p in pairs})
    if path is not None:
        write_pairs(pairs, path)
    console.print(f"[green]Staged[/] {len(pairs)} pairs in {buffer} ({staged['written']} new or changed).")
    print_json(json.loads(json.dumps(staged)))


def stats() -> None:
    """Online use from the query log: questions, abstention rate, latency percentiles, thumbs, review counts."""
    with _store() as store:
        print_json(store.stats(), indent=2)


def dashboard(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """The maintainers' dashboard (Streamlit): online use, the review queue, the dataset, evaluation history."""
    import importlib.util
    import subprocess
    import sys

    from ml.errors import UserError

    if importlib.util.find_spec("streamlit") is None:
        raise UserError("The dashboard needs Streamlit: pip install 'transformers-qa[ui]'.")
    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    raise SystemExit(subprocess.call(command))
