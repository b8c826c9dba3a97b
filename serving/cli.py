"""`tqa` commands of the serving layer: serve, and ask/search through a running server or in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ml.errors import UserError
from ml.settings import Settings

app = typer.Typer()
console = Console(stderr=True)
out = Console()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default TQA_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TQA_PORT, 3000).")] = None,
) -> None:
    """Serve POST /ask and /search (BentoML) with /healthz, /readyz and /metrics; `tqa ask` then uses it."""
    from serving.server import run_server

    settings = Settings()
    run_server(settings, host or settings.host, port or settings.port, say=console.print)


@app.command()
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
            for item in _read_batch(batch):
                answer = backend.ask(item["question"], k)
                keys = ("answer", "abstained", "confidence", "sources")
                _line({"id": item["id"], **{key: answer[key] for key in keys}})
            return
        if not question:
            raise UserError('Pass a question, e.g. tqa ask "How do I load a model in 4-bit?", or --batch FILE.')
        answer = backend.ask(question, k)
    if as_json:
        _line(answer)
    else:
        _print_answer(answer)


@app.command()
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
            for item in _read_batch(batch):
                results = backend.search(item["question"], k, kind, path_prefix)
                keys = ("path", "start_line", "end_line", "symbol", "kind", "score")
                _line({"id": item["id"], "results": [{key: r[key] for key in keys} for r in results]})
            return
        if not query:
            raise UserError("Pass a query, or --batch FILE.")
        results = backend.search(query, k, kind, path_prefix)
    if as_json:
        _line({"results": results})
        return
    for i, r in enumerate(results, 1):
        out.print(f"{i:2}. [bold]{r['symbol'] or r['path']}[/] {r['path']}:{r['start_line']}-{r['end_line']} ", end="")
        out.print(f"({r['kind']}, {r['score']:.3f})", style="dim")


def _read_batch(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"Batch file {path} does not exist.")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            items.append({"id": item["id"], "question": str(item["question"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f'{path}:{n} is not a JSON object with "id" and "question".') from exc
    return items


def _line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


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
