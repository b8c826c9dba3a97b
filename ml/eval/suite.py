"""The full offline evaluation: dev questions, out-of-scope, injections and a sample of the generated dataset."""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ml.eval.answers import abstention_scores, citation_support, exact_match, mention_coverage, token_f1
from ml.eval.gate import EvalConfig, threshold_failures
from ml.eval.retrieval import Gold, Result, dev_queries, is_symbol_hit, out_of_scope_questions, resolve_gold
from ml.settings import Settings
from ml.sources.corpus import Corpus, decode, resolve_corpus

SLICES = ("category", "persona", "source_kind")


@dataclass
class Item:
    """One evaluation question and what a good answer looks like."""

    id: str
    set: str
    question: str
    category: str
    persona: str = ""
    source_kind: str = ""
    reference: str = ""
    must_mention: list[str] = field(default_factory=list)
    gold: Gold | None = None
    out_of_scope: bool = False
    canary: str = ""


@dataclass
class Outcome:
    item: Item
    answer: str
    abstained: bool
    latency_ms: float
    ranks: dict[str, int | None]
    f1: float | None = None
    em: float | None = None
    mention: float | None = None
    supported: int = 0
    cited: int = 0
    resisted: bool | None = None


def index_corpus(settings: Settings) -> Corpus:
    """The corpus the index was built from (the installed package unless a checkout was ingested)."""
    from ml.index.state import StateStore

    if not settings.state_db.exists():
        return resolve_corpus()
    state = StateStore(settings.state_db)
    try:
        root, name = state.get_meta("root"), state.get_meta("corpus")
    finally:
        state.close()
    if root and name != "transformers":
        return resolve_corpus(path=Path(root), doc_languages=settings.doc_languages)
    return resolve_corpus()


def dev_items(corpus: Corpus) -> list[Item]:
    items = []
    for q in dev_queries():
        items.append(
            Item(
                id=q.id,
                set="dev",
                question=q.question,
                category="dev",
                persona=q.persona,
                source_kind="code",
                must_mention=q.facts or [q.symbol.rsplit(".", 1)[-1]],
                gold=resolve_gold(corpus, q.path, q.symbol),
            )
        )
    for n, question in enumerate(out_of_scope_questions(), 1):
        items.append(Item(f"oos{n:02d}", "out_of_scope", question, "out_of_scope", "outsider", out_of_scope=True))
    text = resources.files("ml.eval").joinpath("data/injection.jsonl").read_text()
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(Item(row["id"], "injection", row["question"], "injection", "attacker", canary=row["canary"]))
    return items


def dataset_items(eval_file: Path, sample: int, seed: int) -> list[Item]:
    """A sample of the generated eval split, stratified by category (round-robin over shuffled categories)."""
    from ml.dataset.checks import load_pairs

    pairs = load_pairs(eval_file)
    by_category: dict[str, list[Any]] = {}
    for pair in sorted(pairs, key=lambda p: p.id):
        by_category.setdefault(pair.category, []).append(pair)
    rng = random.Random(seed)
    for group in by_category.values():
        rng.shuffle(group)
    picked: list[Any] = []
    while len(picked) < sample and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(picked) < sample:
                picked.append(by_category[category].pop())
    items = []
    for pair in picked:
        s = pair.source
        gold = Gold(s.path, s.symbol, s.start_line, s.end_line) if s.path and s.start_line else None
        items.append(
            Item(
                id=pair.id,
                set="generated",
                question=pair.question,
                category=pair.category,
                persona=pair.persona,
                source_kind=s.kind,
                reference=pair.answer,
                must_mention=pair.must_mention,
                gold=gold,
            )
        )
    return items


def _span_text(corpus: Corpus, hit: Any, cache: dict[str, list[str]]) -> str:
    """The cited span as it stands in the corpus file (the chunk's own text when the file is not on disk)."""
    c = hit.chunk
    file = corpus.base / c.path if c.path else None
    if file is None or not c.start_line or not file.is_file():
        return c.text
    if c.path not in cache:
        cache[c.path] = decode(file.read_bytes())[0].splitlines()
    return "\n".join(cache[c.path][c.start_line - 1 : c.end_line])


def run_items(qa: Any, corpus: Corpus, items: list[Item], k: int = 10) -> list[Outcome]:
    """Ask every item through the pipeline's retriever and answerer and score it."""
    outcomes = []
    cache: dict[str, list[str]] = {}
    for item in items:
        started = time.perf_counter()
        hits = qa.retriever.search(item.question, k=k)
        answer = qa.answerer.answer(item.question, hits[:5])
        latency = (time.perf_counter() - started) * 1000
        results = [Result(path=h.chunk.path, start_line=h.chunk.start_line, end_line=h.chunk.end_line) for h in hits]
        ranks: dict[str, int | None] = {}
        if item.gold is not None:
            g = item.gold
            ranks["file"] = next((i for i, r in enumerate(results, 1) if r.path == g.path), None)
            ranks["symbol"] = next((i for i, r in enumerate(results, 1) if is_symbol_hit(r, g)), None)
        out = Outcome(item, answer.answer, answer.abstained, latency, ranks)
        if not item.out_of_scope and not item.canary:
            if item.reference:
                out.f1 = 0.0 if answer.abstained else token_f1(answer.answer, item.reference)
                out.em = 0.0 if answer.abstained else exact_match(answer.answer, item.reference)
            out.mention = mention_coverage("" if answer.abstained else answer.answer, item.must_mention)
        if not answer.abstained:
            by_number = {s.n: s for s in answer.sources}
            spans = {}
            for n in by_number:
                if n - 1 < len(hits):
                    spans[n] = _span_text(corpus, hits[n - 1], cache)
            out.supported, out.cited = citation_support(answer.answer, spans)
        if item.canary:
            out.resisted = item.canary.lower() not in answer.answer.lower()
        outcomes.append(out)
    return outcomes


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def _retrieval(outcomes: list[Outcome], prefix: str) -> dict[str, float]:
    scored = [o for o in outcomes if o.item.gold is not None]
    if not scored:
        return {}
    metrics: dict[str, float] = {}
    for level in ("file", "symbol"):
        ranks = [o.ranks.get(level) for o in scored]
        for k in (1, 5, 10):
            metrics[f"{prefix}{level}_recall_at_{k}"] = round(sum(1 for r in ranks if r and r <= k) / len(ranks), 4)
        metrics[f"{prefix}{level}_mrr_at_10"] = round(sum(1 / r for r in ranks if r and r <= 10) / len(ranks), 4)
    return metrics


def summarise(outcomes: list[Outcome]) -> dict[str, float]:
    """The run's headline metrics."""
    metrics: dict[str, float] = {}
    metrics.update(_retrieval([o for o in outcomes if o.item.set == "dev"], "dev_"))
    metrics.update(_retrieval([o for o in outcomes if o.item.set == "generated"], "gen_"))
    answered = [o for o in outcomes if not o.item.out_of_scope and not o.item.canary]
    for name, values in (
        ("answer_f1", [o.f1 for o in answered]),
        ("answer_em", [o.em for o in answered]),
        ("must_mention", [o.mention for o in answered]),
    ):
        value = _mean(values)
        if value is not None:
            metrics[name] = value
    cited = sum(o.cited for o in outcomes)
    metrics["citation_support"] = round(sum(o.supported for o in outcomes) / cited, 4) if cited else 0.0
    in_or_out = [o for o in outcomes if not o.item.canary]
    metrics.update(
        {
            k: round(v, 4)
            for k, v in abstention_scores(
                [o.abstained for o in in_or_out], [o.item.out_of_scope for o in in_or_out]
            ).items()
        }
    )
    injected = [o.resisted for o in outcomes if o.resisted is not None]
    if injected:
        metrics["injection_resistance"] = round(sum(injected) / len(injected), 4)
    latencies = sorted(o.latency_ms for o in outcomes)
    metrics["latency_p50_ms"] = round(statistics.median(latencies), 1)
    metrics["latency_p95_ms"] = round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
    return metrics


def slices(outcomes: list[Outcome]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Metrics per value of each slice dimension (category, persona, source kind)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for dim in SLICES:
        groups: dict[str, list[Outcome]] = {}
        for o in outcomes:
            groups.setdefault(getattr(o.item, dim) or "none", []).append(o)
        out[dim] = {}
        for value, group in sorted(groups.items()):
            cited = sum(o.cited for o in group)
            symbol = [o.ranks["symbol"] for o in group if "symbol" in o.ranks]
            out[dim][value] = {
                "n": len(group),
                "answer_f1": _mean([o.f1 for o in group]),
                "must_mention": _mean([o.mention for o in group]),
                "citation_support": round(sum(o.supported for o in group) / cited, 4) if cited else None,
                "symbol_recall_at_5": round(sum(1 for r in symbol if r and r <= 5) / len(symbol), 4)
                if symbol
                else None,
                "abstain_rate": round(sum(o.abstained for o in group) / len(group), 4),
                "latency_p50_ms": round(statistics.median(o.latency_ms for o in group), 1),
            }
    return out


def run_eval(
    settings: Settings,
    config: EvalConfig,
    dataset_dir: Path | None = None,
    qa: Any = None,
) -> dict[str, Any]:
    """Evaluate the configured pipeline; the report holds metrics, slices, threshold failures and worst cases."""
    from ml.pipeline import QA

    started = time.perf_counter()
    corpus = index_corpus(settings)
    items = dev_items(corpus)
    manifest: dict[str, Any] = {}
    if dataset_dir is not None:
        from ml.dataset.types import Manifest

        manifest_file = dataset_dir / "manifest.json"
        if not manifest_file.is_file():
            from ml.errors import UserError

            raise UserError(f"No manifest.json in {dataset_dir}; run `tqa dataset build` first.")
        manifest = Manifest.model_validate_json(manifest_file.read_text()).model_dump()
        items += dataset_items(dataset_dir / "eval.jsonl", config.sample, config.seed)
    owns = qa is None
    qa = qa or QA(settings)
    try:
        qa.retriever.search("warm up", k=1)
        outcomes = run_items(qa, corpus, items, k=config.k)
        answerer = getattr(qa.answerer, "name", type(qa.answerer).__name__)
        retrieval = {
            "alpha": qa.retriever.config.alpha,
            "candidates": qa.retriever.config.candidates,
            "symbol_boost": qa.retriever.config.symbol_boost,
            "dedupe_symbols": qa.retriever.config.dedupe_symbols,
        }
        chunks = qa.index.count()
    finally:
        if owns:
            qa.close()
    metrics = summarise(outcomes)
    failures = threshold_failures(metrics, config)
    worst = sorted((o for o in outcomes if o.f1 is not None), key=lambda o: (o.f1 or 0.0, o.item.id))[:5]
    return {
        "meta": {
            "items": len(outcomes),
            "by_set": {
                s: sum(o.item.set == s for o in outcomes) for s in ("dev", "out_of_scope", "injection", "generated")
            },
            "seconds": round(time.perf_counter() - started, 1),
            "corpus": {"name": corpus.name, "version": corpus.version},
            "index": {"collection": settings.collection, "chunks": chunks, "data_dir": str(settings.data_dir)},
            "retrieval": retrieval,
            "answerer": answerer,
            "embedding_model": settings.embedding_model,
            "llm_model": settings.llm_model if settings.answerer == "llm" else "",
            "abstain_threshold": settings.abstain_threshold,
            "dataset": {k: manifest[k] for k in ("dataset_hash", "records", "counts")} if manifest else {},
            "config": config.model_dump(),
        },
        "metrics": metrics,
        "slices": slices(outcomes),
        "thresholds": {"passed": not failures, "failures": failures},
        "worst": [
            {
                "id": o.item.id,
                "question": o.item.question,
                "reference": o.item.reference,
                "answer": o.answer,
                "f1": o.f1,
            }
            for o in worst
        ],
    }
