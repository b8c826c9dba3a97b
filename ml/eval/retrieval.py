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
from ml.sources.corpus import Corpus, decode
from ml.sources.python_code import chunk_python, module_name

KS = (1, 5, 10)


class GoldRef(BaseModel):
    """Another place that answers a question equally well."""

    path: str
    symbol: str


class Query(BaseModel):
    """A question with its gold location (the file and the symbol that answer it) and the facts an answer needs."""

    id: str
    question: str
    path: str
    symbol: str
    persona: str = ""
    source: str = "dev"
    kind: str = ""
    alt: list[GoldRef] = []
    facts: list[str] = []
    # "tune": knobs and thresholds may be chosen on it; "test": reported only, never looked at while tuning.
    split: str = "tune"


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


# The first set (all tuned on) and the second, written from the source without looking at the system, half of it
# held out as the untouched test half.
DEV_FILES = ("data/dev_questions.jsonl", "data/dev_v2.jsonl")
OUT_OF_SCOPE_FILES = ("data/out_of_scope.jsonl", "data/out_of_scope_v2.jsonl")


def _lines(name: str) -> list[str]:
    return [line for line in resources.files("ml.eval").joinpath(name).read_text().splitlines() if line.strip()]


def dev_queries(split: str | None = None) -> list[Query]:
    """The hand-written dev questions shipped with the package; `split` keeps only "tune" or "test"."""
    queries = [Query.model_validate_json(line) for name in DEV_FILES for line in _lines(name)]
    return [q for q in queries if split is None or q.split == split]


def out_of_scope_questions(split: str | None = None) -> list[str]:
    """Questions the repository cannot answer (many share its words); `split` keeps only "tune" or "test"."""
    items = [json.loads(line) for name in OUT_OF_SCOPE_FILES for line in _lines(name)]
    return [i["question"] for i in items if split is None or i.get("split", "tune") == split]


def scope_training_questions() -> tuple[list[str], list[str]]:
    """(in scope, out of scope) questions without gold symbols, for training the scope model only: users' ways of
    asking about Transformers, and other libraries' and tools' questions that share its words. Never evaluated."""
    return _scope_split("data/scope_train.jsonl")


def scope_heldout_questions() -> tuple[list[str], list[str]]:
    """(in scope, out of scope) questions written without sight of the dev and out-of-scope sets, and never trained
    on: a measure of abstention on questions the scope model and its threshold were not fitted to.
    Mostly other tools that share Transformers' words (vLLM, timm, NeMo, Lightning, scikit-learn's transformers)."""
    return _scope_split("data/scope_heldout.jsonl")


def _scope_split(name: str) -> tuple[list[str], list[str]]:
    """(in scope, out of scope) questions of a packaged JSONL set with an `in_scope` flag."""
    items = [json.loads(line) for line in _lines(name)]
    return [i["question"] for i in items if i["in_scope"]], [i["question"] for i in items if not i["in_scope"]]


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
    """The result is a part of the symbol (a window, an argument entry or an example of it), or its range contains
    the symbol's definition line and is not much larger than the symbol."""
    if result.path != gold.path:
        return False
    if result.symbol and result.symbol.split("#")[0] == gold.symbol:
        return True
    if not result.start_line <= gold.start_line <= result.end_line:
        return False
    span = gold.end_line - gold.start_line + 1
    return result.end_line - result.start_line + 1 <= 2 * span + 10


def first_rank(results: list[Result], golds: Gold | list[Gold], level: str = "symbol") -> int | None:
    """1-based rank of the first result that hits any gold (symbol or file level) in the top 10."""
    options = golds if isinstance(golds, list) else [golds]
    for i, r in enumerate(results[:10], 1):
        if any(r.path == g.path if level == "file" else is_symbol_hit(r, g) for g in options):
            return i
    return None


def score(ranked: list[list[Result]], golds: list[Gold] | list[list[Gold]]) -> dict[str, float]:
    """Recall@k and MRR@10 at file and symbol level; a query may have several equally good golds."""
    out: dict[str, float] = {}
    for level in ("file", "symbol"):
        ranks = [first_rank(results, gold, level) for results, gold in zip(ranked, golds, strict=True)]
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


def bm25_searchers(
    corpus: Corpus, two_stage_weights: Iterable[float] = (0.5,), only: set[str] | None = None
) -> dict[str, Searcher]:
    """The BM25 baselines over the corpus's own chunks and files (no index needed): per symbol with identifier
    splitting, whole files, and two-stage (symbol + weighted file score) for each weight."""
    from ml.eval import bm25
    from ml.sources.corpus import chunk_file

    chunks = {}
    files: dict[str, str] = {}
    for file in corpus.iter_files():
        rel = corpus.rel(file)
        if only is not None and rel not in only:
            continue
        data = file.read_bytes()
        files[rel] = decode(data)[0]
        for c in chunk_file(corpus, rel, data).chunks:
            chunks[c.id] = c
    by_symbol = bm25.BM25({i: f"{c.symbol} {c.path} {c.text}" for i, c in chunks.items()})
    by_file = bm25.BM25(files)
    file_of = {i: c.path for i, c in chunks.items()}

    def as_results(ids: list[str]) -> list[Result]:
        return [
            Result(
                path=chunks[i].path,
                start_line=chunks[i].start_line,
                end_line=chunks[i].end_line,
                symbol=chunks[i].symbol,
            )
            for i in ids
        ]

    out: dict[str, Searcher] = {
        "bm25_symbol": lambda q, k: as_results(bm25.top(by_symbol.scores(q), k)),
        "bm25_file": lambda q, k: [Result(path=p, start_line=0, end_line=0) for p, _ in by_file.search(q, k)],
    }
    for weight in two_stage_weights:
        out[f"bm25_two_stage_{weight:g}"] = lambda q, k, w=weight: as_results(
            bm25.top(bm25.two_stage(by_symbol.scores(q), file_of, by_file.scores(q), w), k)
        )
    return out


def evaluate(queries: list[Query], corpus: Corpus, searchers: dict[str, Searcher], k: int = 10) -> dict[str, Any]:
    """Metrics of every searcher on the queries whose gold resolves in the corpus (the rest are listed)."""
    golds: list[list[Gold]] = []
    kept, missing = [], []
    for q in queries:
        gold = resolve_gold(corpus, q.path, q.symbol)
        if gold is None:
            missing.append(q.id)
        else:
            alts = [resolve_gold(corpus, a.path, a.symbol) for a in q.alt]
            golds.append([gold, *(a for a in alts if a is not None)])
            kept.append(q)
    report: dict[str, Any] = {"queries": len(kept), "unresolved": missing, "systems": {}, "per_query": {}}
    for name, search in searchers.items():
        ranked = [search(q.question, k) for q in kept]
        report["systems"][name] = score(ranked, golds)
        report["per_query"][name] = {q.id: first_rank(rs, g) for q, rs, g in zip(kept, ranked, golds, strict=True)}
    return report
