"""Answer metrics: token F1 and exact match (SQuAD style), must-mention coverage, citation support, abstention."""

from __future__ import annotations

import re
import string
from collections import Counter

from ml.answer.verify import citations_in, split_sentences, support

_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
# The extractive answerer's location labels ("in path.py:10-20:", "(path.py:10-20)") cite, they do not claim.
_LOCATION = re.compile(r"\(?\b[\w./-]+\.\w+:\d+-\d+\)?:?")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def strip_markup(answer: str) -> str:
    """Answer text without citations, location labels and code quotes, as compared with a reference."""
    text = _CITATION.sub(" ", answer)
    text = _LOCATION.sub(" ", text)
    return " ".join(text.replace("`", " ").split())


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch if ch not in string.punctuation else " " for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(strip_markup(prediction)) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(strip_markup(prediction)).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def mention_coverage(answer: str, terms: list[str]) -> float | None:
    """Share of `terms` the answer names (case-insensitive); None when there is nothing to mention."""
    terms = [t for t in terms if t]
    if not terms:
        return None
    lowered = answer.lower()
    return sum(t.lower() in lowered for t in terms) / len(terms)


def citation_support(answer: str, spans: dict[int, str], min_support: float = 0.5) -> tuple[int, int]:
    """(supported, cited) sentences: a cited sentence is supported when a span it cites contains its content.

    `spans` maps each citation number to the text of the cited span as it stands in the corpus.
    """
    supported = cited = 0
    for line in answer.splitlines():
        for sentence in _sentences(line):
            numbers = citations_in(sentence)
            if not numbers:
                continue
            cited += 1
            claim = _LOCATION.sub(" ", sentence)
            for n in numbers:
                score, reason = support(claim, spans.get(n, ""))
                if not reason and score >= min_support:
                    supported += 1
                    break
    return supported, cited


def _sentences(text: str) -> list[str]:
    """Sentences of a line, a trailing citation ("... norm. [1]") kept with the sentence before it."""
    out: list[str] = []
    for part in split_sentences(text):
        if out and not _CITATION.sub("", part).strip():
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def abstention_scores(abstained: list[bool], out_of_scope: list[bool]) -> dict[str, float]:
    """Precision and recall of abstaining, where an out-of-scope question is the positive class."""
    tp = sum(a and o for a, o in zip(abstained, out_of_scope, strict=True))
    predicted, positives = sum(abstained), sum(out_of_scope)
    return {
        "abstention_precision": tp / predicted if predicted else 1.0,
        "abstention_recall": tp / positives if positives else 1.0,
    }
