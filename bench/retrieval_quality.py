"""Retrieval and abstention on the dev set and an automatic docstring set: the system, ablations and BM25 baselines."""

from __future__ import annotations

import argparse
import json

from bench.common import machine
from ml.eval.retrieval import dev_queries, out_of_scope_questions
from ml.eval.run import run_retrieval_eval
from ml.pipeline import QA
from ml.retrieve import RetrievalConfig
from ml.settings import Settings

ABLATIONS = {
    "dense_only": RetrievalConfig(alpha=1.0),
    "bm25_split_only": RetrievalConfig(alpha=0.0),
    "alpha_0.3": RetrievalConfig(alpha=0.3),
    "alpha_0.7": RetrievalConfig(alpha=0.7),
    "no_symbol_boost": RetrievalConfig(symbol_boost=0.0),
    "no_dedupe": RetrievalConfig(dedupe_symbols=False),
    "name_boost_0.2": RetrievalConfig(name_boost=0.2),
    "name_boost_0.4": RetrievalConfig(name_boost=0.4),
}
METRICS = ["file_recall@1", "file_recall@5", "file_recall@10", "symbol_recall@1", "symbol_recall@5", "symbol_mrr@10"]


def abstention(settings: Settings) -> dict[str, float]:
    qa = QA(settings)
    try:
        answerable = [qa.ask(q.question).abstained for q in dev_queries()]
        unrelated = [qa.ask(q).abstained for q in out_of_scope_questions()]
    finally:
        qa.close()
    return {
        "answerable_abstained": sum(answerable) / len(answerable),
        "out_of_scope_abstained": sum(unrelated) / len(unrelated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docstrings", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    report = run_retrieval_eval(settings, docstrings=args.docstrings, configs=ABLATIONS)
    rates = abstention(settings)
    if args.json:
        print(json.dumps({"retrieval": report, "abstention": rates}))
        return
    print(f"retrieval quality ({machine()})")
    for set_name, result in report.items():
        print(f"\n{set_name}: {result['queries']} questions (unresolved gold: {result['unresolved'] or 'none'})")
        print(f"  {'system':18s}" + "".join(f"{m:>17s}" for m in METRICS))
        for system, values in result["systems"].items():
            print(f"  {system:18s}" + "".join(f"{values.get(m, float('nan')):17.3f}" for m in METRICS))
        if set_name == "dev":
            missed = [q for q, rank in result["per_query"]["system"].items() if not rank or rank > 5]
            print(f"  system misses at symbol level @5: {', '.join(missed) or 'none'}")
    print(
        f"\nabstention: answerable dev questions {rates['answerable_abstained']:.0%}, "
        f"out-of-scope {rates['out_of_scope_abstained']:.0%}"
    )


if __name__ == "__main__":
    main()
