"""The packaged question sets: the held-out scope set shares no question with anything a model is trained on."""

from __future__ import annotations

from ml.eval.retrieval import dev_queries, out_of_scope_questions, scope_heldout_questions, scope_training_questions


def normal(question: str) -> str:
    return " ".join(question.lower().split())


def test_the_held_out_scope_set_is_never_trained_on_and_holds_both_kinds() -> None:
    in_scope, out_of_scope = scope_heldout_questions()
    assert len(in_scope) >= 30 and len(out_of_scope) >= 50
    trained_in, trained_out = scope_training_questions()
    seen = {normal(q) for q in trained_in + trained_out + out_of_scope_questions()}
    seen |= {normal(q.question) for q in dev_queries()}
    held = [normal(q) for q in in_scope + out_of_scope]
    assert len(set(held)) == len(held)
    assert not set(held) & seen
