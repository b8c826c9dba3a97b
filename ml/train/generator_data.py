"""RAG-format training examples for the generator: a question with numbered sources -> an answer that cites them.

Each QA pair becomes the exact chat the LLM answerer sends at serving time (`ml.answer.llm.build_messages`): the
pair's grounding chunk is one of `sources` numbered sources, the others are chunks of other pairs (distractors the
way retrieval returns near misses), and the target answer ends with the gold source's number. A share of examples
leaves the gold source out and teaches the refusal the answerer expects (`INSUFFICIENT_SOURCES`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from ml.dataset.types import QAPair
from ml.errors import UserError
from ml.types import Chunk, ChunkKind, Hit

_KINDS = set(get_args(ChunkKind))


@dataclass(frozen=True)
class RagExample:
    """One training conversation: the chat messages and the assistant reply to learn."""

    id: str
    messages: list[dict[str, str]]
    answer: str
    gold: int | None  # the cited source number, None for a refusal


def load_splits(directory: Path) -> tuple[str, list[QAPair], list[QAPair]]:
    """The dataset hash and its train and eval pairs; one sentence when the directory cannot be trained on."""
    from ml.dataset.checks import SPLIT_FILES, load_dataset

    if not (directory / SPLIT_FILES["train"]).is_file():
        raise UserError(
            f"Dataset {directory} has no train split ({SPLIT_FILES['train']}); build one with `tqa dataset build`."
        )
    manifest, splits = load_dataset(directory)
    if not splits["train"]:
        raise UserError(f"The train split of {directory} is empty; the generator needs training pairs.")
    return manifest.dataset_hash, splits["train"], splits["eval"]


def _chunk(pair: QAPair) -> Chunk:
    s = pair.source
    return Chunk(
        id=s.chunk_id,
        kind=s.kind if s.kind in _KINDS else "text",  # type: ignore[arg-type]
        text=pair.context,
        path=s.path,
        start_line=s.start_line,
        end_line=s.end_line,
        symbol=s.symbol,
        url=s.url,
        commit=s.commit,
        issue=s.issue,
        pr=s.pr,
    )


def cite(answer: str, n: int) -> str:
    """The reference answer with its citation after the last sentence, as the answerer is asked to write it."""
    text = answer.strip()
    return f"{text} [{n}]" if text else f"[{n}]"


def rag_examples(pairs: list[QAPair], sources: int = 3, refusal_share: float = 0.1, seed: int = 13) -> list[RagExample]:
    """One example per pair; the same pairs, `sources` and `seed` always give the same examples."""
    from ml.answer.llm import INSUFFICIENT, build_messages

    pool = [p for p in pairs if p.context.strip()]
    if not pool:
        return []
    out = []
    for pair in pool:
        rng = random.Random(int(hashlib.sha256(f"{seed}:{pair.id}".encode()).hexdigest()[:16], 16))
        others = [p for p in rng.sample(pool, min(len(pool), sources + 1)) if p.source.chunk_id != pair.source.chunk_id]
        refuse = rng.random() < refusal_share and len(others) >= 1
        if refuse:
            chosen = others[:sources]
            gold = None
        else:
            chosen = others[: sources - 1]
            gold = rng.randint(1, len(chosen) + 1)
            chosen.insert(gold - 1, pair)
        hits = [Hit(chunk=_chunk(p), score=1.0) for p in chosen]
        answer = INSUFFICIENT if gold is None else cite(pair.answer, gold)
        out.append(RagExample(pair.id, build_messages(pair.question, hits), answer, gold))
    return out
