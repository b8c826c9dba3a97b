"""Citation verification for generated answers: every [n] must exist and every cited sentence must be supported.

Support is lexical and deliberately strict: each identifier the sentence names (`snake_case`, `CamelCase`,
dotted paths, backticked code) must occur in a cited source, and most of its content words, or a five-word span,
must come from one. A sentence that fails is dropped; an answer left with no supported sentence is rejected, and
the caller falls back to the extractive answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s*(?:\[\d+(?:\s*,\s*\d+)*\]))*\s+(?=[A-Z`\"'(\[*-])|\n\s*\n|\n(?=\s*[-*\d])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+(?:\.\d+)*")
_BACKTICK = re.compile(r"`([^`]+)`")
_IDENT = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+"  # dotted: model.generate, torch.bfloat16
    r"|\b[A-Za-z0-9]*_[A-Za-z0-9_]+\b"  # snake_case: load_in_4bit
    r"|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b"  # CamelCase: BitsAndBytesConfig
)
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STOPWORDS = frozenset(
    """a about above after again all also an and any are as at be because been before being below between both but by
    can cannot could did do does doing down during each few for from further had has have having here how if in into is
    it its itself just may might more most must no nor not now of off on once only or other our out over own same
    should so some such than that the their them then there these they this those through to too under until up use
    used uses using very was way we were what when where which while who whom why will with would you your
    yes""".split()
)


@dataclass
class SentenceCheck:
    """One answer sentence and what verification found."""

    text: str
    citations: list[int]
    supported: bool
    support: float
    reason: str = ""


@dataclass
class VerificationResult:
    """The verified answer text and the sentences that were dropped, with why."""

    text: str
    kept: list[SentenceCheck] = field(default_factory=list)
    dropped: list[SentenceCheck] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)

    @property
    def cited(self) -> list[int]:
        """Source numbers cited by the kept sentences, in first-cited order."""
        seen: list[int] = []
        for s in self.kept:
            seen.extend(n for n in s.citations if n not in seen)
        return seen

    @property
    def confidence(self) -> float:
        cited = [s for s in self.kept if s.citations]
        return sum(s.support for s in cited) / len(cited) if cited else 0.0


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of an answer; a citation right after a full stop stays with its sentence."""
    parts: list[str] = []
    for block in _SENTENCE_END.split(text.strip()):
        if block and block.strip():
            parts.append(block.strip())
    return parts


def citations_in(sentence: str) -> list[int]:
    """The [n] numbers in a sentence, in order, without repeats; `[1, 3]` counts as 1 and 3."""
    found: list[int] = []
    for group in CITATION.findall(sentence):
        for n in group.split(","):
            if int(n) not in found:
                found.append(int(n))
    return found


def identifiers(text: str) -> set[str]:
    """Code identifiers a sentence names; each must appear verbatim in a source it cites."""
    found: set[str] = set()
    for code in _BACKTICK.findall(text):
        code = code.strip()
        if _BARE.match(code):
            found.add(code)
        found.update(m.rstrip(".") for m in _IDENT.findall(code))
    found.update(m.rstrip(".") for m in _IDENT.findall(_BACKTICK.sub(" ", text)))
    return {f for f in found if len(f) > 1}


def _norm(word: str) -> str:
    w = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> list[str]:
    """Normalised words that carry meaning (stopwords and citation numbers removed)."""
    text = CITATION.sub(" ", text)
    words: list[str] = []
    for token in _WORD.findall(text.replace("_", " ")):
        if len(token) < 2 or token.lower() in STOPWORDS:
            continue
        words.append(_norm(token))
    return words


def _shares_span(sentence_words: list[str], source_words: list[str], n: int = 5) -> bool:
    if len(sentence_words) < n:
        return False
    grams = {tuple(source_words[i : i + n]) for i in range(len(source_words) - n + 1)}
    return any(tuple(sentence_words[i : i + n]) in grams for i in range(len(sentence_words) - n + 1))


def support(sentence: str, source: str) -> tuple[float, str]:
    """How well `source` supports `sentence`: (share of its content words found, reason when unsupported)."""
    missing = sorted(i for i in identifiers(CITATION.sub(" ", sentence)) if i not in source)
    words = content_words(sentence)
    if not words:
        return 0.0, "no content to check"
    source_words = content_words(source)
    vocab = set(source_words)
    share = sum(w in vocab for w in words) / len(words)
    if missing:
        return share, f"names {', '.join(missing)}, absent from the source"
    if _shares_span(words, source_words):
        return max(share, 1.0), ""
    return share, ""


def verify_answer(answer: str, sources: dict[int, str], min_support: float = 0.5) -> VerificationResult:
    """Check each sentence of `answer` against `sources` (number -> the text the model was shown).

    A sentence citing a number that is not a source is dropped and the number reported. A cited sentence is kept
    when at least one source it cites supports it. An uncited sentence is kept only if some source supports it,
    so unsourced claims never pass silently.
    """
    result = VerificationResult(text="")
    for sentence in split_sentences(answer):
        cites = citations_in(sentence)
        invalid = [n for n in cites if n not in sources]
        if invalid:
            result.invalid_citations.extend(n for n in invalid if n not in result.invalid_citations)
            result.dropped.append(SentenceCheck(sentence, cites, False, 0.0, f"cites missing source {invalid}"))
            continue
        candidates = cites or list(sources)
        best, why = 0.0, "no source given"
        for n in candidates:
            score, reason = support(sentence, sources[n])
            if not reason and score >= min_support:
                best, why = score, ""
                break
            if score >= best:
                best, why = score, reason or f"only {score:.0%} of its words are in the source"
        check = SentenceCheck(sentence, cites, not why, best, why)
        (result.kept if check.supported else result.dropped).append(check)
    result.text = " ".join(s.text for s in result.kept)
    return result
