"""Identifier splitting for BM25, question validation and retrieval metrics."""

from __future__ import annotations

import pytest

from ml.eval.retrieval import Gold, Result, is_symbol_hit, score
from ml.index.tokens import expand_identifiers, split_identifier
from ml.pipeline import InvalidQuestion, validate_question
from ml.retrieve import query_identifiers


def test_identifiers_split_into_words() -> None:
    assert split_identifier("AutoModelForCausalLM") == ["auto", "model", "for", "causal", "lm"]
    assert split_identifier("from_pretrained") == ["from", "pretrained"]
    assert split_identifier("load_in_4bit") == ["load", "in", "4", "bit"]
    assert expand_identifiers("call model.from_pretrained(x)") == "from pretrained"


def test_query_identifiers_are_what_the_user_typed_as_code() -> None:
    assert query_identifiers("Why does `use_cache` turn off in LlamaModel?") == {"use_cache", "llamamodel"}
    assert query_identifiers("how do i load a model") == set()


def test_questions_are_validated_with_the_status_a_client_gets() -> None:
    assert validate_question("  hi  ") == "hi"
    with pytest.raises(InvalidQuestion, match="empty") as empty:
        validate_question("   ")
    assert empty.value.status == 400
    with pytest.raises(InvalidQuestion, match="4096 bytes") as big:
        validate_question("x" * 5000)
    assert big.value.status == 413
    with pytest.raises(InvalidQuestion, match="k must be"):
        validate_question("ok", k=0)


def test_symbol_hit_needs_the_definition_and_a_tight_range() -> None:
    gold = Gold("a.py", "f", 10, 20)
    assert is_symbol_hit(Result(path="a.py", start_line=10, end_line=20), gold)
    assert not is_symbol_hit(Result(path="a.py", start_line=12, end_line=20), gold)  # misses the def line
    assert not is_symbol_hit(Result(path="a.py", start_line=1, end_line=400), gold)  # the whole file
    assert not is_symbol_hit(Result(path="b.py", start_line=10, end_line=20), gold)


def test_recall_and_mrr() -> None:
    gold = [Gold("a.py", "f", 1, 5), Gold("b.py", "g", 1, 5)]
    ranked = [
        [Result(path="x.py", start_line=1, end_line=5), Result(path="a.py", start_line=1, end_line=5)],
        [Result(path="x.py", start_line=1, end_line=5)],
    ]
    metrics = score(ranked, gold)
    assert metrics["symbol_recall@1"] == 0.0
    assert metrics["symbol_recall@5"] == 0.5
    assert metrics["symbol_mrr@10"] == 0.25
