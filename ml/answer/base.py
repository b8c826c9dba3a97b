"""The answerer seam: every answerer turns a question and its retrieved hits into a cited `Answer`."""

from __future__ import annotations

from typing import Protocol

from ml.types import Answer, Hit, Source

ABSTAIN_TEXT = "I could not find this in the Transformers repository."


class Answerer(Protocol):
    """Turns a question and ranked hits (best first) into an answer citing those hits as [n]."""

    name: str

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        """Answer from `hits` only; abstain (``abstained=True``, ``ABSTAIN_TEXT``) when they do not answer it."""
        ...


def source_of(n: int, hit: Hit) -> Source:
    """The citation [n] for a hit."""
    c = hit.chunk
    return Source(
        n=n,
        kind=c.kind,
        path=c.path,
        start_line=c.start_line,
        end_line=c.end_line,
        symbol=c.symbol,
        url=c.url,
        commit=c.commit,
        issue=c.issue,
        pr=c.pr,
    )
