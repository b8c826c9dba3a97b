"""`tqa search|ask|serve`: query the index, through a running server or in-process, and serve it over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ml.errors import UserError
from ml.settings import Settings
from ops.cli._io import console, out, print_json, read_batch


def search(
    query: Annotated[str | None, typer.Argument(help="What to look for: words, identifiers or a question.")] = None,
    k: Annotated[int, typer.Option(help="How many results.")] = 10,
    kind: Annotated[list[str] | None, typer.Option(help="Only these chunk kinds (repeatable).")] = None,
    path_prefix: Annotated[str | None, typer.Option(help="Only paths starting with this prefix.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    batch: Annotated[
        Path | None, typer.Option(help='JSONL file of {"id", "question"}; writes {"id", "results"} per line.')
    ] = None,
) -> None:
    """Ranked chunks for a query (hybrid BM25 + dense), best first."""
    from serving.local import Backend

    with Backend(Settings()) as backend:
        if batch is not None:
            for item in read_batch(batch):
                results = backend.search(item["question"], k, kind, path_prefix)
                keys = ("path", "start_line", "end_line", "symbol", "kind", "score")
                print_json({"id": item["id"], "results": [{key: r[key] for key in keys} for r in results]})
            return
        if not query:
            raise UserError("Pass a query, or --batch FILE.")
        results = backend.search(query, k, kind, path_prefix)
    if as_json:
        print_json({"results": results})
        return
    for i, r in enumerate(results, 1):
        out.print(f"{i:2}. [bold]{r['symbol'] or r['path']}[/] {r['path']}:{r['start_line']}-{r['end_line']} ", end="")
        out.print(f"({r['kind']}, {r['score']:.3f})", style="dim")


def ask(
    question: Annotated[str | None, typer.Argument(help="A question about the Transformers repository.")] = None,
    k: Annotated[int, typer.Option(help="How many chunks to read before answering.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    batch: Annotated[
        Path | None, typer.Option(help='JSONL file of {"id", "question"}; writes one JSON answer per line.')
    ] = None,
) -> None:
    """Answer a question with numbered citations (file, lines, symbol, link pinned to the indexed version)."""
    from serving.local import Backend

    with Backend(Settings()) as backend:
        if batch is not None:
            for item in read_batch(batch):
                answer = backend.ask(item["question"], k)
                keys = ("answer", "abstained", "confidence", "sources")
                print_json({"id": item["id"], **{key: answer[key] for key in keys}})
            return
        if not question:
            raise UserError('Pass a question, e.g. tqa ask "How do I load a model in 4-bit?", or --batch FILE.')
        answer = backend.ask(question, k)
    if as_json:
        print_json(answer)
    else:
        _print_answer(answer)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default TQA_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TQA_PORT, 3000).")] = None,
) -> None:
    """Serve POST /ask and /search (BentoML) with /healthz, /readyz and /metrics; `tqa ask` then uses it."""
    from serving.server import run_server

    settings = Settings()
    run_server(settings, host or settings.host, port or settings.port, say=console.print)


def _print_answer(answer: dict[str, Any]) -> None:
    out.print(answer["answer"], markup=False, highlight=False)
    if answer["sources"]:
        out.print()
    for s in answer["sources"]:
        extra = "".join(f" {k} {s[k]}" for k in ("commit", "pr", "issue") if s.get(k) and k != "commit")
        out.print(f"[{s['n']}] {s['path']}:{s['start_line']}-{s['end_line']} {s['symbol']}{extra}", markup=False)
        out.print(f"    {s['url']}", style="blue", markup=False)
    note = f"confidence {answer['confidence']:.2f}"
    if answer.get("fallback"):
        note += f" · fallback: {answer['fallback']}"
    out.print(note, style="dim")
