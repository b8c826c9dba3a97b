"""Citation verification: missing sources, unsupported sentences and identifiers are caught; faithful ones pass."""

from __future__ import annotations

from ml.answer.verify import citations_in, identifiers, split_sentences, verify_answer

SOURCES = {
    1: "To load a model in 4-bit, pass quantization_config=BitsAndBytesConfig(load_in_4bit=True) to from_pretrained.",
    2: "Gradient checkpointing is incompatible with use_cache=True; use_cache is set to False during training.",
}


def test_sentences_keep_their_trailing_citation() -> None:
    parts = split_sentences("First claim [1]. Second claim [2].\n- a list item [1]")
    assert parts == ["First claim [1].", "Second claim [2].", "- a list item [1]"]


def test_citations_and_identifiers_are_extracted() -> None:
    assert citations_in("see [2] and [1, 3] and [2]") == [2, 1, 3]
    assert {"load_in_4bit", "BitsAndBytesConfig", "model.generate"} <= identifiers(
        "Use `BitsAndBytesConfig(load_in_4bit=True)` then model.generate."
    )


def test_faithful_answer_is_kept_whole() -> None:
    text = "Pass `BitsAndBytesConfig(load_in_4bit=True)` as quantization_config to from_pretrained [1]. "
    text += "During training with gradient checkpointing use_cache is set to False [2]."
    result = verify_answer(text, SOURCES)
    assert not result.dropped
    assert result.cited == [1, 2]
    assert result.text == text.strip()


def test_planted_unsupported_claim_is_dropped() -> None:
    text = (
        "Gradient checkpointing sets use_cache to False during training [2]. "
        "It also makes inference ten times faster on TPUs [2]."
    )
    result = verify_answer(text, SOURCES)
    assert [s.text for s in result.kept] == ["Gradient checkpointing sets use_cache to False during training [2]."]
    assert [s.text for s in result.dropped] == ["It also makes inference ten times faster on TPUs [2]."]
    assert "TPUs" not in result.text


def test_citation_of_a_missing_source_is_dropped_and_reported() -> None:
    result = verify_answer("Load it in 4-bit with load_in_4bit [7].", SOURCES)
    assert result.invalid_citations == [7]
    assert result.kept == []


def test_identifier_absent_from_the_cited_source_fails_even_with_word_overlap() -> None:
    result = verify_answer("To load a model in 4-bit pass load_in_8bit to from_pretrained [1].", SOURCES)
    assert result.kept == []
    assert "load_in_8bit" in result.dropped[0].reason


def test_claim_cited_to_the_wrong_source_is_dropped() -> None:
    result = verify_answer("Gradient checkpointing sets use_cache to False during training [1].", SOURCES)
    assert result.kept == []


def test_uncited_sentence_is_kept_only_when_a_source_supports_it() -> None:
    result = verify_answer("use_cache is set to False during training. Bananas are yellow.", SOURCES)
    assert [s.text for s in result.kept] == ["use_cache is set to False during training."]
    assert result.cited == []
