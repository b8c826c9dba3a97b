"""Staged feedback pairs in a dataset build: added to training, kept out where they overlap held-out questions."""

from __future__ import annotations

from pathlib import Path

from ml.dataset.build import BuildConfig, add_feedback, build_dataset
from ml.dataset.checks import leakage_problems, load_dataset
from ml.dataset.types import QAPair, SourceRef
from ml.index.staging import append_pairs, feedback_buffer, staged_pairs
from ml.settings import Settings
from ml.types import Chunk

FUNCTION = '''def {name}(path: str, dtype: str = "float16"):
    """Load a {name} model from `path` in the given dtype and place it on devices."""
    return path'''


def chunks() -> list[Chunk]:
    out = []
    for i in range(12):
        name = f"load_{i}"
        text = FUNCTION.format(name=name)
        out.append(
            Chunk(
                id=f"c{i}",
                kind="function",
                text=text,
                path=f"transformers/m{i}.py",
                symbol=name,
                start_line=1,
                end_line=3,
                signature=text.splitlines()[0],
            )
        )
    return out


def feedback(query_id: str, question: str, path: str, chunk_id: str) -> QAPair:
    return QAPair(
        id=f"feedback-{query_id}",
        category="user_correction",
        question=question,
        answer="It loads the weights.",
        context="def x(): ...",
        source=SourceRef(kind="feedback", path=path, chunk_id=chunk_id, date="2026-11-30T00:00:00+00:00"),
        generator="human-review",
        created_at="2026-11-30T00:00:00+00:00",
    )


def test_build_adds_staged_feedback_to_train_unless_it_overlaps_eval(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    config = BuildConfig(eval_fraction=0.5)
    result = build_dataset(chunks(), tmp_path / "ds", {"corpus": "test"}, config)
    evaluation = [p for p in result.pairs if p.split == "eval"]
    train = [p for p in result.pairs if p.split == "train"]
    assert evaluation and train
    held, trained = evaluation[0], train[0]
    pairs = {
        "a" * 32: feedback("a" * 32, held.question.upper(), trained.source.path, trained.source.chunk_id),
        "b" * 32: feedback("b" * 32, "Why is my model slow to load?", held.source.path, "elsewhere"),
        "c" * 32: feedback("c" * 32, "How do I load weights on two devices?", trained.source.path, "c-new"),
    }
    buffer = feedback_buffer(settings.staging_file)
    assert append_pairs(buffer, {q: p.model_dump(mode="json") for q, p in pairs.items()})["written"] == 3
    assert append_pairs(buffer, {q: p.model_dump(mode="json") for q, p in pairs.items()})["written"] == 0

    built = add_feedback(settings, result, config)
    _, splits = load_dataset(built.directory)
    feedback_ids = {p.id for p in splits["train"] if p.source.kind == "feedback"}
    assert feedback_ids == {"feedback-" + "c" * 32}, "an eval question or an eval file never trains"
    assert not any(p.source.kind == "feedback" for p in splits["eval"])
    assert built.manifest.rejected["overlaps_eval"] == 2
    assert built.manifest.by_source_kind["feedback"] == 1
    assert built.manifest.dataset_hash != result.manifest.dataset_hash
    assert leakage_problems(splits["train"], splits["eval"]) == []


def test_a_pair_no_longer_approved_is_withdrawn_from_the_buffer(tmp_path: Path) -> None:
    buffer = tmp_path / "staging" / "feedback.jsonl"
    one = feedback("d" * 32, "How do I load weights on two devices?", "transformers/m1.py", "c1")
    append_pairs(buffer, {"d" * 32: one.model_dump(mode="json")})
    assert set(staged_pairs(buffer)) == {"d" * 32}
    assert append_pairs(buffer, {}) == {"written": 0, "withdrawn": 1, "staged": 0}
    assert staged_pairs(buffer) == {}
