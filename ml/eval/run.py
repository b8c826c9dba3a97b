"""Runs retrieval evaluations against the configured index: the system beside plain BM25, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml.eval.retrieval import (
    Query,
    Result,
    Searcher,
    bm25_searchers,
    dev_queries,
    docstring_queries,
    evaluate,
    load_queries,
)
from ml.pipeline import QA
from ml.retrieve import RetrievalConfig, Retriever
from ml.settings import Settings
from ml.sources.corpus import Corpus
from ml.types import Hit


def _results(hits: list[Hit]) -> list[Result]:
    return [
        Result(path=h.chunk.path, start_line=h.chunk.start_line, end_line=h.chunk.end_line, symbol=h.chunk.symbol)
        for h in hits
    ]


def searchers(
    qa: QA, corpus: Corpus, configs: dict[str, RetrievalConfig] | None = None, baselines: bool = True
) -> dict[str, Searcher]:
    """The system (and any extra configurations) beside the BM25 baselines (per symbol, whole file, two-stage)."""
    out: dict[str, Searcher] = {}
    for name, config in {"system": qa.retriever.config, **(configs or {})}.items():
        retriever = Retriever(qa.index, qa.embedder, config, qa.retriever.model, qa.retriever.families)
        out[name] = lambda q, k, r=retriever: _results(r.search(q, k=k))
    if baselines:
        out.update(bm25_searchers(corpus))
    return out


def run_retrieval_eval(
    settings: Settings,
    queries_file: Path | None = None,
    docstrings: int = 0,
    configs: dict[str, RetrievalConfig] | None = None,
) -> dict[str, Any]:
    """Evaluate on the dev set (or `queries_file`) and optionally an automatic docstring-derived set."""
    from ml.eval.suite import index_corpus

    corpus = index_corpus(settings)
    sets: dict[str, list[Query]] = {"dev": load_queries(queries_file) if queries_file else dev_queries()}
    if docstrings:
        sets["docstring"] = docstring_queries(corpus, n=docstrings)
    qa = QA(settings)
    try:
        search = searchers(qa, corpus, configs)
        return {name: evaluate(queries, corpus, search) for name, queries in sets.items()}
    finally:
        qa.close()
