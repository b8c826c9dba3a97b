"""Feedback becomes QA pairs with their provenance: the query id, the cited source and the review.

`trace_pairs` reads them from MLflow (the traces and the assessments the outbox forwarded: what `tqa feedback
export` writes into the staging buffer); `correction_pairs` reads approved corrections from the local store.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def write_pairs(pairs: list[QAPair], path: Path) -> int:
    """Write `pairs` as JSONL `QAPair`s to `path` atomically; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for pair in pairs:
            f.write(json.dumps(pair.model_dump(mode="json"), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(pairs)


# -- from MLflow: traces with their assessments ----------------------------------------------------------------------

RATED_GENERATOR = "user-rating"


def _latest(assessments: list[Any], name: str) -> Any | None:
    mine = [a for a in assessments if a.name == name and getattr(a, "valid", True) is not False]
    return max(mine, key=lambda a: a.create_time_ms or 0) if mine else None


def pair_from_trace(trace: Any) -> QAPair | None:
    """The dataset pair a trace's assessments make, or None.

    An approved correction (an `expected_answer` expectation) makes a `user_correction` pair with the reviewed
    answer; otherwise a thumbs-up (`user_rating` True) on an answer that did not abstain makes a `rated_answer` pair
    with the answer as given. Both are sourced at the first chunk the answer cited.
    """
    from ml.feedback.forward import EXPECTED, RATING

    assessments = list(trace.info.assessments or [])
    expected, rating = _latest(assessments, EXPECTED), _latest(assessments, RATING)
    root = next((s for s in trace.data.spans if s.parent_id is None), None) if trace.data else None
    if root is None or (expected is None and (rating is None or rating.value is not True)):
        return None
    inputs, outputs = root.inputs or {}, root.outputs or {}
    if expected is None and outputs.get("abstained"):
        return None
    query_id = trace.info.tags.get("tqa.query_id") or trace.info.trace_id
    chosen = expected or rating
    when = datetime.fromtimestamp((chosen.create_time_ms or 0) / 1000, UTC).isoformat(timespec="seconds")
    cited = outputs.get("cited") or {}
    return QAPair(
        id=f"feedback-{query_id}",
        category="user_correction" if expected is not None else "rated_answer",
        question=str(inputs.get("question", "")),
        answer=str(expected.value if expected is not None else outputs.get("answer", "")),
        context=str(cited.get("context", "")),
        source=SourceRef(
            kind="feedback",
            path=cited.get("path", ""),
            start_line=cited.get("start_line") or 0,
            end_line=cited.get("end_line") or 0,
            symbol=cited.get("symbol") or "",
            commit=cited.get("commit") or "",
            url=cited.get("url") or "",
            chunk_id=cited.get("chunk_id") or f"feedback:{query_id}",
            date=when,
        ),
        generator=GENERATOR if expected is not None else RATED_GENERATOR,
        created_at=when,
    )


def trace_pairs(tracking_uri: str, experiment: str) -> list[QAPair]:
    """Pairs from every trace of `experiment` that carries our assessments (`mlflow.search_traces`), sorted by id.

    Raises:
        UserError: the tracking server does not answer, or has no such experiment.
    """
    from ml.errors import UserError
    from ml.tracking.server import disable_telemetry

    disable_telemetry()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        found = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    except Exception as exc:
        raise UserError(f"MLflow at {tracking_uri} did not answer ({type(exc).__name__}); start it and retry.") from exc
    if found is None:
        raise UserError(f"MLflow at {tracking_uri} has no experiment {experiment!r}; no answer was traced there yet.")
    traces = mlflow.search_traces(locations=[found.experiment_id], return_type="list")
    pairs = [p for p in (pair_from_trace(t) for t in traces if t.info.assessments) if p is not None]
    return sorted(pairs, key=lambda p: p.id)
