"""Retrieval evaluation: Recall@1/5/10 and MRR@10 at file and symbol level, beside plain BM25 baselines."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ml.errors import UserError
from ml.eval.bm25 import BM25
from ml.sources.corpus import Corpus, decode
from ml.sources.python_code import chunk_python, module_name

KS = (1, 5, 10)


class Query(BaseModel):
    """A question with its gold location: the file and the symbol that answer it."""

    id: str
    question: str
    path: str
    symbol: str
    persona: str = ""
    source: str = "dev"


class Result(BaseModel):
    path: str
    start_line: int
    end_line: int
    symbol: str = ""


@dataclass(frozen=True)
class Gold:
    path: str
    symbol: str
    start_line: int
    end_line: int


def load_queries(path: Path) -> list[Query]:
    """Queries from JSONL; a line without a question, path or symbol is a clear error."""
    if not path.is_file():
        raise UserError(f"Query file {path} does not exist.")
    queries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                queries.append(Query.model_validate_json(line))
            except ValueError as exc:
                raise UserError(f'{path}:{n} needs "id", "question", "path" and "symbol".') from exc
    return queries


def dev_queries() -> list[Query]:
    """The hand-written dev questions shipped with the package."""
    text = resources.files("ml.eval").joinpath("data/dev_questions.jsonl").read_text()
    return [Query.model_validate_json(line) for line in text.splitlines() if line.strip()]


def out_of_scope_questions() -> list[str]:
    text = resources.files("ml.eval").joinpath("data/out_of_scope.jsonl").read_text()
    return [json.loads(line)["question"] for line in text.splitlines() if line.strip()]


def resolve_gold(corpus: Corpus, path: str, symbol: str) -> Gold | None:
    """The line span of `symbol` in `path` (its largest definition, so an @overload stub never wins)."""
    file = corpus.base / path
    if not file.is_file():
        return None
    text, _ = decode(file.read_bytes())
    spans = [
        (p.start_line, p.end_line)
        for p in chunk_python(text, module_name(path))
        if p.symbol == symbol and p.part == 0 and p.kind != "module"
    ]
    if not spans:
        return None
    # For split functions, the whole symbol spans from its first line to the last part's end.
    start, _ = max(spans, key=lambda s: s[1] - s[0])
    ends = [p.end_line for p in chunk_python(text, module_name(path)) if p.symbol == symbol and p.start_line >= start]
    return Gold(path, symbol, start, max(ends))


def is_symbol_hit(result: Result, gold: Gold) -> bool:
    """The result's range contains the symbol's definition line and is not much larger than the symbol."""
    if result.path != gold.path or not result.start_line <= gold.start_line <= result.end_line:
        return False
    span = gold.end_line - gold.start_line + 1
    return result.end_line - result.start_line + 1 <= 2 * span + 10


def score(ranked: list[list[Result]], golds: list[Gold]) -> dict[str, float]:
    """Recall@k and MRR@10 at file and symbol level."""
    out: dict[str, float] = {}
    for level, hit in (("file", lambda r, g: r.path == g.path), ("symbol", is_symbol_hit)):
        ranks = []
        for results, gold in zip(ranked, golds, strict=True):
            rank = next((i for i, r in enumerate(results[:10], 1) if hit(r, gold)), None)
            ranks.append(rank)
        n = max(len(ranks), 1)
        for k in KS:
            out[f"{level}_recall@{k}"] = round(sum(1 for r in ranks if r and r <= k) / n, 3)
        out[f"{level}_mrr@10"] = round(sum(1 / r for r in ranks if r) / n, 3)
    return out


def docstring_queries(corpus: Corpus, n: int = 100, seed: int = 13) -> list[Query]:
    """An automatic set: the first sentence of a docstring asks for its symbol (sentences unique in the corpus)."""
    import ast

    candidates: dict[str, list[tuple[str, str]]] = {}
    for file in corpus.iter_files():
        if file.suffix != ".py":
            continue
        rel = corpus.rel(file)
        try:
            tree = ast.parse(decode(file.read_bytes())[0])
        except (SyntaxError, ValueError):
            continue
        for node, qual in _symbols(tree):
            doc = ast.get_docstring(node) or ""
            first = re.split(r"(?<=\.)\s", " ".join(doc.split()), maxsplit=1)[0]
            if 8 <= len(first.split()) <= 40 and "`" not in first and node.name.lower() not in first.lower():
                candidates.setdefault(first, []).append((rel, qual))
    unique = sorted((s, locs[0]) for s, locs in candidates.items() if len(locs) == 1)
    picked = random.Random(seed).sample(unique, min(n, len(unique)))
    return [
        Query(id=f"doc{i:03d}", question=s, path=path, symbol=sym, persona="docstring", source="docstring")
        for i, (s, (path, sym)) in enumerate(sorted(picked))
    ]


def _symbols(tree: Any) -> Iterable[tuple[Any, str]]:
    import ast

    def walk(nodes: list[Any], parent: str) -> Iterable[tuple[Any, str]]:
        for node in nodes:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{parent}.{node.name}" if parent else node.name
                yield node, qual
                if isinstance(node, ast.ClassDef):
                    yield from walk(node.body, qual)

    return walk(tree.body, "")


Searcher = Callable[[str, int], list[Result]]


def file_bm25_searcher(corpus: Corpus) -> Searcher:
    """Plain BM25 over whole files (the file-level baseline; it has no symbol ranges)."""
    docs = {corpus.rel(f): decode(f.read_bytes())[0] for f in corpus.iter_files()}
    bm25 = BM25(docs)

    def search(question: str, k: int) -> list[Result]:
        return [Result(path=p, start_line=0, end_line=0) for p, _ in bm25.search(question, k)]

    return search


def evaluate(queries: list[Query], corpus: Corpus, searchers: dict[str, Searcher], k: int = 10) -> dict[str, Any]:
    """Metrics of every searcher on the queries whose gold resolves in the corpus (the rest are listed)."""
    golds, kept, missing = [], [], []
    for q in queries:
        gold = resolve_gold(corpus, q.path, q.symbol)
        if gold is None:
            missing.append(q.id)
        else:
            golds.append(gold)
            kept.append(q)
    report: dict[str, Any] = {"queries": len(kept), "unresolved": missing, "systems": {}, "per_query": {}}
    for name, search in searchers.items():
        ranked = [search(q.question, k) for q in kept]
        report["systems"][name] = score(ranked, golds)
        report["per_query"][name] = {
            q.id: next((i for i, r in enumerate(rs[:10], 1) if is_symbol_hit(r, g)), None)
            for q, rs, g in zip(kept, ranked, golds, strict=True)
        }
    return report
