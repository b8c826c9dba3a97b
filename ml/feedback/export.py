"""Approved corrections become QA pairs with their provenance: the query id, the cited source and the review."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ml.dataset.types import QAPair, SourceRef
from ml.feedback.store import FeedbackStore

GENERATOR = "human-review"


def correction_pairs(store: FeedbackStore) -> list[QAPair]:
    """One `user_correction` pair per approved correction, sorted by id, sourced at the first chunk the answer cited."""
    pairs = []
    for item in store.review_queue("approved", limit=1_000_000):
        answer = item["answer"]
        sources = answer.get("sources", [])
        first = sources[0] if sources else {}
        # The first cited chunk is the pair's source: its id and the start of its text, as `tqa dataset check`
        # traces every pair to an indexed chunk. Answers logged without chunk ids keep the query id instead.
        n = str(first.get("n", ""))
        chunk_id = answer.get("cited_chunks", {}).get(n, f"feedback:{item['query_id']}")
        context = answer.get("excerpts", {}).get(n, "")
        reviewed = datetime.fromtimestamp(item["reviewed_at"] or item["updated_at"], UTC)
        pairs.append(
            QAPair(
                id=f"feedback-{item['query_id']}",
                category="user_correction",
                question=item["question"],
                answer=item["reviewed_answer"],
                context=context,
                source=SourceRef(
                    kind="feedback",
                    path=first.get("path", ""),
                    start_line=first.get("start_line", 0),
                    end_line=first.get("end_line", 0),
                    symbol=first.get("symbol", ""),
                    commit=first.get("commit", ""),
                    url=first.get("url", ""),
                    chunk_id=chunk_id,
                    date=reviewed.isoformat(timespec="seconds"),
                ),
                generator=GENERATOR,
                created_at=reviewed.isoformat(timespec="seconds"),
            )
        )
    return sorted(pairs, key=lambda p: p.id)


def export_pairs(store: FeedbackStore, path: Path) -> int:
    """Write every approved correction as a JSONL `QAPair` to `path` atomically; returns how many."""
    pairs = correction_pairs(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for pair in pairs:
            f.write(json.dumps(pair.model_dump(mode="json"), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(pairs)
