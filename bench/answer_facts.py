"""Do extractive answers carry the facts a correct answer needs? Per split and kind of the dev set (dev_v2).

For each answerable question of `ml/eval/data/dev_v2.jsonl` this prints the share of answers that contain all of the
question's `facts` (case-insensitive) and the share that cite the gold symbol, and splits the misses into
"gold retrieved in the top 3 but facts missing" (the answer text's fault) and "gold not retrieved" (retrieval's).

Three retrievals:
- `--retrieval index` (default): the real pipeline, `ml.pipeline.QA(Settings())`, over the configured index
  (`--data-dir` to point at another one). Numbers depend on the index and retriever you ran against.
- `--retrieval oracle`: no index. The gold file (and alternative gold files) of the installed transformers package is
  chunked with the project's chunker and its chunks are ranked by word overlap with the question, the gold symbol's
  chunks first. It isolates the answer text from retrieval: every miss here is the answerer's.
- `--mini-index DIR`: the real pipeline over an index of its own in DIR (built on first use, reused after): the mini
  corpus of tests/support/corpus.py plus every gold file of the dev set, on free 127.0.0.1 ports. For when the full
  index is not there (or busy being rebuilt); rankings differ from the full index's (fewer competitors).

    python -m bench.answer_facts --retrieval oracle [--split tune] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from ml.settings import Settings
from ml.types import Answer, Hit

DEV = Path(__file__).resolve().parents[1] / "ml" / "eval" / "data" / "dev_v2.jsonl"


def load(split: str | None) -> list[dict]:
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("facts") and (split is None or r["split"] == split)]


def golds(row: dict) -> list[tuple[str, str]]:
    return [(row["path"], row["symbol"])] + [(a["path"], a["symbol"]) for a in row.get("alt", [])]


def is_gold(path: str, symbol: str, row: dict) -> bool:
    return any(path == p and symbol == s for p, s in golds(row))


def has_facts(answer: str, facts: list[str]) -> bool:
    low = answer.lower()
    return all(f.lower() in low for f in facts)


class OracleRetriever:
    """Chunks of the gold files, ranked by overlap with the question, the gold symbol's chunks first."""

    def __init__(self) -> None:
        from ml.sources.corpus import resolve_corpus

        self.corpus = resolve_corpus(package="transformers")
        self._cache: dict[str, list] = {}

    def _chunks(self, path: str) -> list:
        from ml.sources.corpus import chunk_file

        if path not in self._cache:
            file = self.corpus.base / path
            self._cache[path] = chunk_file(self.corpus, path, file.read_bytes()).chunks if file.exists() else []
        return self._cache[path]

    def hits(self, row: dict, k: int = 5) -> list[Hit]:
        from ml.answer.extractive import _stems

        q = _stems(row["question"])
        scored = []
        for path in dict.fromkeys(p for p, _ in golds(row)):
            for c in self._chunks(path):
                overlap = len(q & _stems(f"{c.symbol} {c.text}")) / (1 + len(q))
                bonus = 2.0 if is_gold(c.path, c.symbol, row) else 0.0
                scored.append((bonus + overlap, c))
        scored.sort(key=lambda t: -t[0])
        return [Hit(chunk=c, score=s, dense=0.6) for s, c in scored[:k]]


def build_mini_index(data_dir: Path, rows: list[dict]) -> Settings:
    """An index of the mini corpus plus the dev set's gold files in `data_dir` (ingest skips unchanged files)."""
    from ml.index.embed import make_embedder
    from ml.index.ingest import ingest
    from ml.index.state import StateStore
    from ml.index.weaviate_index import WeaviateIndex
    from ml.settings import Settings
    from tests.support.corpus import MINI_CORPUS_FILES, make_mini_corpus, transformers_root
    from tests.support.ports import free_port

    root = transformers_root()
    gold = sorted({p.removeprefix("transformers/") for row in rows for p, _ in golds(row)})
    files = sorted({*MINI_CORPUS_FILES, *(f for f in gold if (root / f).exists())})
    corpus = make_mini_corpus(data_dir / "corpus", files)
    # The same ports every time: the embedded server's node name (in its Raft state) follows its HTTP port.
    ports_file = data_dir / "ports.json"
    if not ports_file.exists():
        ports_file.write_text(json.dumps({"http": free_port(), "grpc": free_port()}))
    ports = json.loads(ports_file.read_text())
    settings = Settings(data_dir=data_dir / "data", weaviate_port=ports["http"], weaviate_grpc_port=ports["grpc"])
    state = StateStore(settings.state_db)
    started = time.perf_counter()
    try:
        with WeaviateIndex.open(settings) as index:
            report = ingest(corpus, index, state, make_embedder(settings))
    finally:
        state.close()
    seconds = time.perf_counter() - started
    print(f"mini index: {len(files)} files, {report.chunks_written} chunks written in {seconds:.0f} s")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrieval", choices=("index", "oracle"), default="index")
    parser.add_argument("--split", choices=("tune", "test"), default=None, help="default: both")
    parser.add_argument("--data-dir", type=Path, default=None, help="index data dir (default: the configured one)")
    parser.add_argument("--mini-index", type=Path, default=None, help="build/reuse a gold-files index in this dir")
    parser.add_argument("--show-misses", action="store_true", help="print each answer that misses a fact")
    args = parser.parse_args()

    from ml.answer.extractive import ExtractiveAnswerer

    rows = load(args.split)
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    if args.mini_index is not None:
        settings = build_mini_index(args.mini_index, load(None))
    answerer = ExtractiveAnswerer(threshold=settings.abstain_threshold)
    qa = None
    oracle = None
    if args.retrieval == "index" or args.mini_index is not None:
        from ml.pipeline import QA

        qa = QA(settings, answerer=answerer)
    else:
        oracle = OracleRetriever()
        answerer = ExtractiveAnswerer(threshold=0.0)  # oracle hits measure the text, not abstention

    # per (split, kind): n, facts, cited, in_top3, facts_missing_with_gold, gold_missing, abstained
    stats: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    started = time.perf_counter()
    try:
        for row in rows:
            hits: list[Hit] = []
            if qa is not None:
                answer: Answer = qa.ask(row["question"], k=5, hits_out=hits)
            else:
                assert oracle is not None
                hits = oracle.hits(row)
                answer = answerer.answer(row["question"], hits)
            top3 = any(is_gold(h.chunk.path, h.chunk.symbol, row) for h in hits[:3])
            ok = not answer.abstained and has_facts(answer.answer, row["facts"])
            cited = any(is_gold(s.path, s.symbol, row) for s in answer.sources)
            for key in ((row["split"], row["kind"]), (row["split"], "ALL")):
                s = stats[key]
                s["n"] += 1
                s["facts"] += ok
                s["cited"] += cited
                s["top3"] += top3
                s["abstained"] += answer.abstained
                s["miss_with_gold"] += top3 and not ok
                s["gold_missing"] += not top3
            if args.show_misses and not ok and top3:
                missing = [f for f in row["facts"] if f.lower() not in answer.answer.lower()]
                print(f"--- {row['id']} [{row['split']} {row['kind']}] {row['question']}")
                print(f"    gold {row['symbol']}; missing {missing}")
                print("    " + answer.answer.replace("\n", "\n    "))
    finally:
        if qa is not None:
            qa.close()

    print(f"\nretrieval: {args.retrieval}" + (f" over {settings.data_dir}" if qa is not None else ""))
    print(f"{len(rows)} answerable questions in {time.perf_counter() - started:.1f} s")
    header = (
        f"{'split':6} {'kind':13} {'n':>4} {'facts':>7} {'cited':>7} {'gold@3':>7} {'gold@3,miss':>12} {'no gold':>8}"
        f" {'abstained':>9}"
    )
    print(header)
    for (split, kind), s in sorted(stats.items(), key=lambda kv: (kv[0][0] != "tune", kv[0][1] == "ALL", kv[0][1])):
        n = s["n"]
        print(
            f"{split:6} {kind:13} {n:4d} {s['facts'] / n:7.2f} {s['cited'] / n:7.2f} {s['top3'] / n:7.2f}"
            f" {s['miss_with_gold']:12d} {s['gold_missing']:8d} {s['abstained']:9d}"
        )


if __name__ == "__main__":
    main()
