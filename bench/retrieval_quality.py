"""Retrieval, answers and confidence on both halves of the dev set, beside strong BM25 baselines, in one run; and
abstention on a scope set nothing is trained on (`ml/eval/data/scope_heldout.jsonl`).

Knobs are tuned on the "tune" half only (the ranker and the confidence model are trained on it, the two-stage
baseline's file weight is picked on it); the "test" half is reported untouched. Usage:

    python -m bench.retrieval_quality [--docstrings 200] [--json] [--plot reliability.png]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import machine
from ml.answer.confidence import auroc, reliability
from ml.eval.retrieval import (
    Result,
    bm25_searchers,
    dev_queries,
    docstring_queries,
    evaluate,
    out_of_scope_questions,
    scope_heldout_questions,
)
from ml.eval.run import searchers
from ml.eval.suite import index_corpus
from ml.pipeline import QA
from ml.retrieve import RetrievalConfig
from ml.settings import Settings
from ml.train.ranker import golds_of

METRICS = ["file_recall@1", "file_recall@5", "symbol_recall@1", "symbol_recall@5", "symbol_mrr@10"]
TWO_STAGE_WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def ablations(base: RetrievalConfig) -> dict[str, RetrievalConfig]:
    return {
        "no_ranker": replace(base, ranker=False),
        "ranker_no_bm25_candidates": replace(base, bm25_candidates=0),
        "ranker_no_family_search": replace(base, family_candidates=0),
    }


def indexed_paths(settings: Settings) -> set[str]:
    """Paths of the files the index holds (a partial index is compared on its own files only)."""
    from ml.index.state import StateStore

    store = StateStore(settings.state_db)
    try:
        return set(store.for_corpus(store.get_meta("corpus") or "").files())
    finally:
        store.close()


def questions(split: str, only: set[str] | None) -> list[Any]:
    return [q for q in dev_queries(split) if only is None or q.path in only]


def retrieval(qa: QA, corpus: Any, docstrings: int, only: set[str] | None = None) -> dict[str, Any]:
    systems = searchers(qa, corpus, ablations(qa.retriever.config), baselines=False)
    systems.update(bm25_searchers(corpus, TWO_STAGE_WEIGHTS, only))
    out: dict[str, Any] = {}
    for split in ("tune", "test"):
        out[split] = evaluate(questions(split, only), corpus, systems)
    # The two-stage baseline's weight is the one best on the tuning half.
    best = max(TWO_STAGE_WEIGHTS, key=lambda w: out["tune"]["systems"][f"bm25_two_stage_{w:g}"]["symbol_recall@5"])
    for split in out.values():
        split["systems"]["bm25_two_stage"] = split["systems"][f"bm25_two_stage_{best:g}"]
        split["two_stage_weight"] = best
        for w in TWO_STAGE_WEIGHTS:
            del split["systems"][f"bm25_two_stage_{w:g}"]
    if docstrings:
        keep = {k: systems[k] for k in ("system", "no_ranker", "bm25_symbol", "bm25_file", f"bm25_two_stage_{best:g}")}
        generated = [q for q in docstring_queries(corpus, n=docstrings) if only is None or q.path in only]
        out["docstring"] = evaluate(generated, corpus, keep)
    return out


def answers(qa: QA, corpus: Any, only: set[str] | None = None) -> dict[str, Any]:
    """Facts present, gold cited, confidence AUROC and abstention per split."""
    out: dict[str, Any] = {}
    for split in ("tune", "test"):
        rows = []
        for q in questions(split, only):
            golds = golds_of(corpus, q)
            a = qa.ask(q.question)
            cited = [
                Result(path=s.path, start_line=s.start_line, end_line=s.end_line, symbol=s.symbol) for s in a.sources
            ]
            from ml.eval.retrieval import first_rank

            right = bool(golds) and first_rank(cited, golds) is not None
            text = a.answer.lower()
            facts = bool(q.facts) and not a.abstained and all(f.lower() in text for f in q.facts)
            rows.append({"id": q.id, "kind": q.kind, "confidence": a.confidence, "abstained": a.abstained,
                         "right": right, "facts": facts, "has_facts": bool(q.facts)})  # fmt: skip
        oos = [qa.ask(question) for question in out_of_scope_questions(split)]
        with_facts = [r for r in rows if r["has_facts"]]
        scored = [r for r in rows if not r["abstained"]]
        out[split] = {
            "answerable": len(rows),
            "facts_present": round(sum(r["facts"] for r in with_facts) / max(len(with_facts), 1), 3),
            "gold_cited": round(sum(r["right"] and not r["abstained"] for r in rows) / max(len(rows), 1), 3),
            "confidence_auroc": round(auroc([r["confidence"] for r in scored], [int(r["right"]) for r in scored]), 3),
            "false_abstention": round(sum(r["abstained"] for r in rows) / max(len(rows), 1), 3),
            "out_of_scope": len(oos),
            "out_of_scope_abstained": round(sum(a.abstained for a in oos) / max(len(oos), 1), 3),
            "reliability": reliability([r["confidence"] for r in scored], [int(r["right"]) for r in scored]),
            "facts_by_kind": _by_kind(with_facts),
        }
    in_scope, out_of_scope = scope_heldout_questions()
    out["scope_heldout"] = {
        "out_of_scope": len(out_of_scope),
        "out_of_scope_abstained": round(sum(qa.ask(q).abstained for q in out_of_scope) / len(out_of_scope), 3),
        "in_scope": len(in_scope),
        "in_scope_abstained": round(sum(qa.ask(q).abstained for q in in_scope) / len(in_scope), 3),
    }
    return out


def _by_kind(rows: list[dict[str, Any]]) -> dict[str, float]:
    kinds = sorted({r["kind"] for r in rows if r["kind"]})
    return {
        k: round(sum(r["facts"] for r in rows if r["kind"] == k) / sum(r["kind"] == k for r in rows), 3) for k in kinds
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for split, style in (("tune", "o-"), ("test", "s-")):
        bins = result[split]["reliability"]
        ax.plot([b[0] for b in bins], [b[1] for b in bins], style, label=f"{split} half")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share of answers citing a gold symbol")
    ax.set_title("Reliability of answer confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docstrings", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path, default=None, help="Write the reliability plot to this PNG.")
    parser.add_argument(
        "--indexed-only",
        action="store_true",
        help="A partial index: only questions whose gold file is indexed, baselines over the indexed files only.",
    )
    args = parser.parse_args()
    settings = Settings()
    corpus = index_corpus(settings)
    only = indexed_paths(settings) if args.indexed_only else None
    qa = QA(settings)
    try:
        ranked = retrieval(qa, corpus, args.docstrings, only)
        answered = answers(qa, corpus, only)
    finally:
        qa.close()
    if args.plot:
        plot(answered, args.plot)
    if args.json:
        print(json.dumps({"retrieval": ranked, "answers": answered}))
        return
    scope = f"partial index: {len(only)} files" if only is not None else "full index"
    print(f"retrieval quality ({machine()}; {scope})")
    for set_name, result in ranked.items():
        extra = (
            f", two-stage file weight {result['two_stage_weight']:g} (picked on tune)"
            if "two_stage_weight" in result
            else ""
        )
        print(f"\n{set_name}: {result['queries']} questions (unresolved gold: {result['unresolved'] or 'none'}){extra}")
        print(f"  {'system':28s}" + "".join(f"{m:>17s}" for m in METRICS))
        for system, values in result["systems"].items():
            print(f"  {system:28s}" + "".join(f"{values.get(m, float('nan')):17.3f}" for m in METRICS))
    for split, a in answered.items():
        if split == "scope_heldout":
            print(
                f"\nscope, held-out set (never trained on): out-of-scope abstained {a['out_of_scope_abstained']:.3f} "
                f"of {a['out_of_scope']}, in-scope abstained {a['in_scope_abstained']:.3f} of {a['in_scope']}"
            )
            continue
        print(
            f"\nanswers, {split} half: facts present {a['facts_present']:.3f} (by kind {a['facts_by_kind']}), "
            f"gold cited {a['gold_cited']:.3f}, confidence AUROC {a['confidence_auroc']:.3f}, "
            f"false abstentions {a['false_abstention']:.3f} of {a['answerable']}, "
            f"out-of-scope abstained {a['out_of_scope_abstained']:.3f} of {a['out_of_scope']}"
        )


if __name__ == "__main__":
    main()
