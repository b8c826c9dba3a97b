"""The extractive answerer: the best sentences and code lines of the top hits, each tagged with its citation."""

from __future__ import annotations

import math
import re
import time

from ml.answer.base import ABSTAIN_TEXT, source_of
from ml.answer.history import HistoryAnswerer
from ml.retrieve import words
from ml.types import HISTORY_KINDS, Answer, Chunk, Hit

STOPWORDS = frozenset(
    """a an the and or of to in on for with by from at as is are was were be been being it its this that these those
    how do does did can could should would will i you we they he she my your our me what which who whom why when where
    there here not no yes use used using get set make want need any all some into about than then so if else out up
    just also only very more most much many such one two way ways""".split()
)
# Phrases that address a reader or model; quoted text is data, and such lines are never echoed as an answer.
INSTRUCTION_LIKE = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above)|disregard (all |the )?(previous|prior|above)|system prompt|"
    r"you are now|new instructions",
    re.I,
)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\[(])")


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 1 and w not in STOPWORDS]


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in content_words(text)}


class ExtractiveAnswerer:
    """Answers without a language model; abstains when retrieval confidence is below `threshold`."""

    name = "extractive"

    def __init__(self, threshold: float = 0.5, max_sources: int = 3, max_lines: int = 6):
        self.threshold = threshold
        self.max_sources = max_sources
        self.max_lines = max_lines

    def confidence(self, question: str, hits: list[Hit]) -> float:
        """0..1 from the best dense similarity and how much of the question the top hits cover."""
        if not hits:
            return 0.0
        q = _stems(question)
        dense = max(h.dense for h in hits[:5])
        if not q:
            return round(_scale(dense, 0.2, 0.6), 3)
        covered = set()
        for hit in hits[:3]:
            covered |= q & _stems(f"{hit.chunk.symbol} {hit.chunk.path} {hit.chunk.text}")
        coverage = len(covered) / len(q)
        return round(0.6 * _scale(dense, 0.2, 0.6) + 0.4 * coverage, 3)

    def answer(self, question: str, hits: list[Hit]) -> Answer:
        # Who/when/which PR/what changed/since when: answered (or abstained on) from commit and diff evidence.
        history = HistoryAnswerer(max_sources=self.max_sources, name=self.name).answer(question, hits)
        if history is not None:
            return history
        started = time.perf_counter()
        confidence = self.confidence(question, hits)
        if confidence < self.threshold:
            return Answer(
                answer=ABSTAIN_TEXT,
                confidence=confidence,
                abstained=True,
                sources=[],
                timings_ms={"answer_ms": (time.perf_counter() - started) * 1000},
                answerer=self.name,
            )
        q = _stems(question)
        chosen = hits[: self.max_sources]
        lines: list[str] = []
        for n, hit in enumerate(chosen, 1):
            c = hit.chunk
            if c.kind in HISTORY_KINDS:
                line = f"{history_line(c)} [{n}]"
                lines.append(line if n == 1 else f"See also {line}")
                if n == 1 and c.kind == "diff":
                    lines.extend(f"    {code} [{n}]" for code in self._best_code_lines(c.text, q, limit=2))
                continue
            label = f"`{c.symbol}`" if c.symbol else f"`{c.path}`"
            where = f"{c.path}:{c.start_line}-{c.end_line}"
            sentence = self._best_sentence(c.text, q)
            code = self._best_code_lines(c.text, q, limit=2 if n == 1 else 1)
            if n == 1:
                head = f"{label} in {where}"
                lines.append(f"{head}: {sentence} [{n}]" if sentence else f"{head} [{n}]")
                lines.extend(f"    {line} [{n}]" for line in code)
            else:
                detail = _shorten(sentence, 160) or (code[0] if code else "")
                lines.append(f"See also {label} ({where}): {detail} [{n}]" if detail else f"See also {label} [{n}]")
        return Answer(
            answer="\n".join(lines[: self.max_lines]),
            confidence=confidence,
            abstained=False,
            sources=[source_of(n, h) for n, h in enumerate(chosen, 1)],
            timings_ms={"answer_ms": (time.perf_counter() - started) * 1000},
            answerer=self.name,
        )

    def _best_sentence(self, text: str, q: set[str]) -> str:
        """The prose sentence (docstring, comment or doc text) sharing most words with the question."""
        prose = _prose(text)
        best, best_score = "", 0.0
        for sentence in SENTENCE.split(prose):
            sentence = " ".join(sentence.split())
            if len(sentence) < 20 or INSTRUCTION_LIKE.search(sentence):
                continue
            overlap = len(q & _stems(sentence))
            score = overlap + 0.1 / (1 + len(sentence) / 200)
            if score > best_score:
                best, best_score = sentence, score
        return best[:300] + ("..." if len(best) > 300 else "")

    def _best_code_lines(self, text: str, q: set[str], limit: int) -> list[str]:
        scored = []
        for i, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if (
                not stripped
                or stripped.startswith(("#", "@", '"""', "'''", "module ", "Defines: "))
                or INSTRUCTION_LIKE.search(stripped)
            ):
                continue
            overlap = len(q & _stems(stripped))
            if overlap:
                scored.append((overlap, -i, stripped[:160]))
        scored.sort(reverse=True)
        return [f"`{line}`" for _, _, line in scored[:limit]]


def history_line(c: Chunk) -> str:
    """How a history hit is cited: "Commit abc1234 (PR #123, fixes #45): <subject>", "PR #3 (fixes #10): <title>"."""
    links = []
    if c.kind in ("commit", "diff"):
        if c.pr:
            links.append(f"PR #{c.pr}")
        if c.issue:
            links.append(f"fixes #{c.issue}")
        head = f"Commit {c.commit[:7]}"
        subject = c.symbol.split(" ", 1)[1] if c.kind == "commit" and " " in c.symbol else c.symbol
        if c.kind == "diff":
            subject += f" (changes {c.path}:{c.start_line}-{c.end_line})" if c.start_line else f" (changes {c.path})"
    else:
        number = c.pr if c.kind == "pr" else c.issue
        head = f"{'PR' if c.kind == 'pr' else 'Issue'} #{number}"
        if c.kind == "pr" and c.issue:
            links.append(f"fixes #{c.issue}")
        if c.commit:
            links.append(f"merged as {c.commit[:7]}")
        first = c.text.splitlines()[0] if c.text else ""
        subject = first.split(": ", 1)[1] if ": " in first else first
    return f"{head} ({', '.join(links)}): {subject}" if links else f"{head}: {subject}"


def _prose(text: str) -> str:
    """Docstrings, comments and Markdown text of a chunk, without code."""
    out = []
    for block in re.findall(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', text, re.S):
        out.append(block[0] or block[1])
    out.extend(line.strip().lstrip("# ") for line in text.splitlines() if line.strip().startswith("#"))
    if not out and not re.search(r"^\s*(def|class|@)\s", text, re.M):
        out = [re.sub(r"```.*?```", " ", text, flags=re.S)]  # Markdown: prose without its code blocks
    return " ".join(" ".join(out).split())


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def _scale(x: float, lo: float, hi: float) -> float:
    return min(1.0, max(0.0, (x - lo) / (hi - lo))) if not math.isnan(x) else 0.0
