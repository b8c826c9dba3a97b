"""Validation (grounding, degenerate pairs, duplicates, ambiguity), leak-free splits and a stable dataset hash."""

from __future__ import annotations

from ml.dataset.build import BuildConfig, build_dataset
from ml.dataset.checks import leakage_problems, load_dataset, schema_problems
from ml.dataset.types import QAPair, SourceRef
from ml.dataset.validate import assign_splits, grounding, problem, validate
from ml.types import Chunk


def pair(
    question="What does `f` do?",
    answer="Computes the mean of the inputs.",
    context=None,
    path="t/a.py",
    kind="function",
    date="",
    chunk_id="c1",
    symbol="f",
    commit="",
) -> QAPair:
    context = context if context is not None else f"def f(x):\n    '''{answer}'''"
    return QAPair(
        id=f"{question}{path}{chunk_id}",
        category="code_purpose",
        question=question,
        answer=answer,
        context=context,
        source=SourceRef(kind=kind, path=path, symbol=symbol, chunk_id=chunk_id, date=date, commit=commit),
        generator="rules-v1",
        created_at="2024-01-01T00:00:00+00:00",
    )


def test_ungrounded_and_degenerate_pairs_are_rejected():
    assert problem(pair()) is None
    assert problem(pair(context="def f(x): return 1")) == "not_grounded"
    assert problem(pair(answer="")) == "empty"
    assert problem(pair(answer="f")) == "degenerate_answer"
    assert problem(pair(answer="`g` defaults to `1`.", context="def f(x=1): ...")) == "identifier_not_in_context"
    assert grounding("`x` defaults to `None`.", "def f(x=None): ...") == 1.0


def test_duplicates_and_ambiguous_questions_are_dropped():
    same = [pair(), pair(question="what does `f`   do")]
    kept, rejected = validate(same)
    assert len(kept) == 1 and rejected["duplicate"] == 1
    other = pair(answer="Returns the sum of the inputs.", path="t/b.py", chunk_id="c2")
    kept, rejected = validate([pair(), other])
    assert kept == [] and rejected["ambiguous_question"] == 2


def test_split_keeps_files_together_and_history_newer_in_eval():
    code = [
        pair(
            question=f"What does `f{i}` do?",
            path=f"t/m{i % 7}.py",
            chunk_id=f"c{i}",
            symbol=f"f{i}",
            context=f"def f{i}(x):\n    '''Computes the mean of the inputs.'''",
        )
        for i in range(60)
    ]
    history = [
        pair(
            question=f"Why was `x` changed in commit {i:07d}?",
            kind="commit",
            path="",
            chunk_id=f"h{i}",
            date=f"2024-01-{i + 1:02d}",
            symbol=f"h{i}",
            commit=f"{i:040d}",
        )
        for i in range(20)
    ]
    split = assign_splits(code + history, eval_fraction=0.3)
    train = [p for p in split if p.split == "train"]
    evaluation = [p for p in split if p.split == "eval"]
    assert train and evaluation
    assert leakage_problems(train, evaluation) == []
    assert {p.source.path for p in train if p.source.path}.isdisjoint({p.source.path for p in evaluation})
    # A planted leak: an eval pair's file also in train.
    leak = evaluation[0].model_copy(update={"id": "leak", "split": "train"})
    assert leakage_problems(train + [leak], evaluation)


def _chunks() -> list[Chunk]:
    out = []
    for i in range(40):
        text = f'def fn{i}(a, b={i}):\n    """Return the {i}th power of a plus b, rounded down."""\n    return a'
        out.append(
            Chunk(
                id=f"id{i:03d}",
                kind="function",
                text=text,
                path=f"transformers/m{i % 9}.py",
                symbol=f"fn{i}",
                start_line=1,
                end_line=3,
                signature=f"def fn{i}(a, b={i}):",
            )
        )
    # An @overload-style repeat: same file and symbol, another chunk; which one is kept must not depend on order.
    out.append(out[0].model_copy(update={"id": "zz-overload"}))
    return out


def test_building_twice_gives_the_same_hash_and_valid_files(tmp_path):
    first = build_dataset(_chunks(), tmp_path / "one", {"corpus": "t"}, BuildConfig())
    second = build_dataset(list(reversed(_chunks())), tmp_path / "two", {"corpus": "t"}, BuildConfig())
    assert first.manifest.dataset_hash == second.manifest.dataset_hash
    assert first.manifest.records == len(first.pairs) > 0
    assert set(first.manifest.counts["train"]) | set(first.manifest.counts["eval"]) == {
        "code_purpose",
        "code_arguments",
        "code_default",
    }
    assert schema_problems(tmp_path / "one") == []
    _, splits = load_dataset(tmp_path / "one")
    assert leakage_problems(splits["train"], splits["eval"]) == []
    changed = build_dataset(_chunks()[:-1], tmp_path / "three", {"corpus": "t"}, BuildConfig())
    assert changed.manifest.dataset_hash != first.manifest.dataset_hash
