"""Answers to history questions: who made a change and when, in which PR, what it changed, since when.

The retrieved commit and diff chunks are grouped per commit; a commit *supports* the question when its message and
diff contain the question's key terms (identifiers count more than plain words). Below `SUPPORT_THRESHOLD` no
commit supports the claim the question makes, and the answer says the history has no such change instead of citing
the nearest commit. The threshold is calibrated on questions about changes that did and did not happen
(`bench/history_eval.py`, tune split).

    kind = question_kind("Who changed the default of lora_dropout?")      # "who"
    answer = answer_history(question, hits)                                # None when not a history question
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ml.answer.base import source_of
from ml.retrieve import words
from ml.types import HISTORY_KINDS, Answer, Chunk, Hit

# Calibrated on the tune split of ml/eval/data/history_peft.jsonl (bench/history_eval.py --calibrate picks 0.60 on a
# full peft ingest; test split there: answers with what was asked 0.81, never-happened abstained 0.83).
SUPPORT_THRESHOLD = 0.6

NO_SUCH_CHANGE = "The history has no commit that makes this change"

# Question kinds, first match wins; "first" before "when" so "since when" asks for the oldest commit.
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("who", re.compile(r"\bwho\b|\bwhich (author|contributor|person|developer)\b|\bauthor(ed)? of\b", re.I)),
    (
        "first",
        re.compile(
            r"\bsince when\b|\bsince which\b|\bfirst (introduc|add|appear|support)\w*|\b(originally|initially) "
            r"(introduc|add)\w*|\bwhen did \w+ (first|start)|\bfirst (commit|version|time)\b|\bintroduced first\b",
            re.I,
        ),
    ),
    ("pr", re.compile(r"\bwhich (pr|pull request|commit|change)\b|\bwhat (pr|pull request|commit)\b", re.I)),
    (
        "what",
        re.compile(
            r"\bwhat (changed|was changed|did .* change|change[sd]? (was|were) made)\b|\bhow did .* change\b|"
            r"\bwhat (was|is) the (old|previous|former|new)\b|\bchanged? (from|to)\b|\bbefore and after\b|"
            r"\bwhat did .* (change|replace|rename)\b|\bwhat was .* (changed|renamed|replaced) to\b",
            re.I,
        ),
    ),
    (
        "when",
        re.compile(
            r"^\W*when\b|\bwhen (was|were|did|has|have|had)\b|\bwhat (date|day|month|year|release)\b|\bhow long ago\b",
            re.I,
        ),
    ),
]

# Words every history question uses; they say what is asked, not which change.
_QUESTION_WORDS = frozenset(
    """a an the and or of to in on for with by from at as is are was were be been being it its this that these those
    how do does did can could should would will i you we they he she my your our me what which who whom why when where
    there here not no yes use used using get set make made want need any all some into about than then so if else
    just also only very more most much many such one two way ways
    add added adding adds introduce introduced introducing introduces change changed changes changing remove removed
    removing removes commit commits pr prs pull request requests merge merged author authored wrote write written
    first since originally initially start started date day month year release version time ago long
    new old previous former now current currently become became get got happen happened land landed
    peft library repo repository project code support supported supports feature features option options
    default defaults value values fix fixed fixes fixing issue issues update updated updates
    before after instead still ever was went go goes person contributor developer
    replace replaced rename renamed""".split()
)
_IDENT = re.compile(
    r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*(?:_[A-Za-z0-9_]+|[a-z][A-Z][A-Za-z0-9]*|[A-Za-z]\d[\w.]*)|\d[\w.]*)\b"
)
_AUTHOR = re.compile(r"^Author: (.+)$", re.M)
_DIFF_AUTHOR = re.compile(r"^author: (.+)$", re.M)


def question_kind(question: str) -> str:
    """The kind of history question: who, first, pr, what, when; "" otherwise ("why" stays with the code answer)."""
    for kind, pattern in _KINDS:
        if pattern.search(question):
            return kind
    return ""


def key_terms(question: str) -> dict[str, float]:
    """The question's terms that name the change, with weights: identifiers and numbers 3, plain words 1."""
    terms: dict[str, float] = {}
    for m in _IDENT.finditer(question):
        token = (m.group(1) or m.group(2) or "").strip().lower()
        if token and len(token) > 1 and token not in _QUESTION_WORDS:
            terms[token] = 3.0
    for w in words(question):
        if len(w) > 2 and w not in _QUESTION_WORDS and _stem(w) not in _QUESTION_WORDS:
            terms.setdefault(w, 1.0)
    return terms


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@dataclass
class CommitEvidence:
    """What the hits say about one commit: its chunks in rank order and its best rank."""

    sha: str
    rank: int
    score: float
    chunks: list[Chunk] = field(default_factory=list)
    hit_numbers: list[int] = field(default_factory=list)  # 1-based positions in the hit list

    @property
    def date(self) -> str:
        return next((c.date for c in self.chunks if c.date), "")

    @property
    def pr(self) -> int | None:
        return next((c.pr for c in self.chunks if c.pr), None)

    @property
    def issue(self) -> int | None:
        return next((c.issue for c in self.chunks if c.issue), None)

    @property
    def author(self) -> str:
        for c in self.chunks:
            m = (_AUTHOR if c.kind == "commit" else _DIFF_AUTHOR).search(c.text)
            if m:
                return m.group(1).strip()
        return ""

    @property
    def subject(self) -> str:
        for c in self.chunks:
            if c.kind == "commit":
                return c.symbol.split(" ", 1)[1] if " " in c.symbol else c.symbol
        return self.chunks[0].symbol if self.chunks else ""

    @property
    def url(self) -> str:
        for c in self.chunks:
            if c.url:
                return c.url.split("#", 1)[0]
        return ""

    def text(self) -> str:
        """Message and changed lines: the evidence a claim must be found in (context lines do not count)."""
        out = []
        for c in self.chunks:
            if c.kind == "diff":
                lines = c.text.splitlines()
                out.append(lines[0] if lines else "")
                out.append(c.path)
                out.extend(line[1:] for line in lines[1:] if line[:1] in "+-" and not line.startswith(("+++", "---")))
            else:
                out.append(c.text)
        return "\n".join(out)


def group_commits(hits: list[Hit]) -> list[CommitEvidence]:
    """History hits grouped per commit, in the rank order of each commit's best hit."""
    by_sha: dict[str, CommitEvidence] = {}
    for n, hit in enumerate(hits, 1):
        c = hit.chunk
        if c.kind not in ("commit", "diff") or not c.commit:
            continue
        ev = by_sha.get(c.commit)
        if ev is None:
            ev = by_sha[c.commit] = CommitEvidence(c.commit, n, hit.score)
        ev.chunks.append(c)
        ev.hit_numbers.append(n)
    return list(by_sha.values())


def support(terms: dict[str, float], text: str) -> float:
    """Weighted share of the key terms the text contains (identifiers as substrings, words by stem)."""
    if not terms:
        return 0.0
    lowered = text.lower()
    stems = {_stem(w) for w in words(text)}
    found = 0.0
    for term, weight in terms.items():
        if weight > 1 and term in lowered or weight <= 1 and _stem(term) in stems:
            found += weight
    return found / sum(terms.values())


def distinctive(terms: dict[str, float], texts: list[str]) -> dict[str, float]:
    """Weigh up terms few of the retrieved commits contain: "LoRA" in every commit says nothing about which change
    is meant, the one rare term ("Flax", "lora_temperature") decides whether the change happened at all."""
    if not texts:
        return terms
    out = {}
    for term, weight in terms.items():
        share = sum(support({term: weight}, text) > 0 for text in texts) / len(texts)
        out[term] = weight * (1 + 2 * (1 - share))
    return out


@dataclass
class HistoryAnswerer:
    """Builds the answer to a history question from its retrieved commit and diff chunks.

    Args:
        threshold: The least support (0..1) a commit needs for the question to be answered from it.
        max_sources: How many commits are cited besides the chosen one.
    """

    threshold: float = SUPPORT_THRESHOLD
    max_sources: int = 3
    name: str = "extractive"

    def answer(self, question: str, hits: list[Hit]) -> Answer | None:
        """The history answer, an abstention when no commit supports the question, or None when not history."""
        started = time.perf_counter()
        kind = question_kind(question)
        commits = group_commits(hits)
        if not kind or not commits:
            return None
        terms = distinctive(key_terms(question), [ev.text() for ev in commits])
        scored = [(support(terms, ev.text()), ev) for ev in commits]
        best = max(s for s, _ in scored)
        timings = lambda: {"answer_ms": (time.perf_counter() - started) * 1000}  # noqa: E731
        if best < self.threshold:
            missing = [t for t in terms if not any(support({t: terms[t]}, ev.text()) for _, ev in scored)]
            why = f": no commit message or diff mentions {', '.join(missing[:4])}" if missing else ""
            return Answer(
                answer=f"{NO_SUCH_CHANGE}{why}.",
                confidence=round(best, 3),
                abstained=True,
                sources=[],
                timings_ms=timings(),
                answerer=self.name,
            )
        # Commits nearly as well supported as the best are candidates; retrieval rank breaks ties, except that
        # "since when" questions want the oldest of them.
        candidates = [ev for s, ev in scored if s >= best - 0.1]
        if kind == "first":
            chosen = min(candidates, key=lambda ev: (ev.date or "9999", ev.rank))
        else:
            chosen = min(candidates, key=lambda ev: (-round(support(terms, ev.text()), 1), ev.rank))
        lines = self._lines(kind, chosen, terms)
        others = [ev for ev in sorted(commits, key=lambda e: e.rank) if ev is not chosen][: self.max_sources - 1]
        cited = [chosen, *others]
        sources, numbers = [], {}
        for ev in cited:
            for n in ev.hit_numbers[:2]:
                numbers.setdefault(ev.sha, len(sources) + 1)
                sources.append(source_of(len(sources) + 1, hits[n - 1]))
        text = "\n".join(line.replace("[*]", f"[{numbers[chosen.sha]}]") for line in lines)
        for ev in others:
            text += f"\nSee also commit {ev.sha[:7]} ({ev.date[:10]}): {ev.subject} [{numbers[ev.sha]}]"
        return Answer(
            answer=text,
            confidence=round(best, 3),
            abstained=False,
            sources=sources,
            timings_ms=timings(),
            answerer=self.name,
        )

    def _lines(self, kind: str, ev: CommitEvidence, terms: dict[str, float]) -> list[str]:
        date = ev.date[:10] or "an unknown date"
        author = ev.author or "an unknown author"
        links = []
        if ev.pr:
            links.append(f"PR #{ev.pr}")
        if ev.issue:
            links.append(f"fixes issue #{ev.issue}")
        link_text = f" ({', '.join(links)})" if links else ""
        web = _pr_links(ev)
        commit = f"commit {ev.sha[:7]}{link_text}"
        if kind == "who":
            head = f"{author} made this change on {date} in {commit}: {ev.subject} [*]"
        elif kind == "first":
            head = f"First introduced on {date} by {author} in {commit}: {ev.subject} [*]"
        elif kind == "pr":
            head = (
                f"PR #{ev.pr} (commit {ev.sha[:7]}, {date}, by {author}): {ev.subject} [*]"
                if ev.pr
                else f"Commit {ev.sha[:7]} ({date}, by {author}; no PR number in its message): {ev.subject} [*]"
            )
            if ev.issue:
                head += f"\nIt fixes issue #{ev.issue}."
        elif kind == "when":
            head = f"On {date}, in {commit} by {author}: {ev.subject} [*]"
        else:
            head = f"Commit {ev.sha[:7]} by {author} on {date}{link_text}: {ev.subject} [*]"
        lines = [head]
        if web:
            lines.append(web)
        lines.extend(before_after(ev, terms))
        return lines


def _pr_links(ev: CommitEvidence) -> str:
    """Web links of the PR and issue, when the commit link is a web page of a GitHub-style host."""
    if not ev.url.startswith(("https://", "http://")) or "/commit/" not in ev.url:
        return ""
    base = ev.url.split("/commit/", 1)[0]
    parts = []
    if ev.pr:
        parts.append(f"{base}/pull/{ev.pr}")
    if ev.issue:
        parts.append(f"{base}/issues/{ev.issue}")
    return " ".join(parts)


def before_after(ev: CommitEvidence, terms: dict[str, float], limit: int = 2) -> list[str]:
    """The removed and added lines that carry the change, paired: the best-matching changed line and its
    counterpart on the other side of the same hunk (an addition alone when nothing was removed)."""
    best: tuple[float, str, list[str], list[str]] | None = None
    for c in ev.chunks:
        if c.kind != "diff":
            continue
        # A test's or example's diff follows the change; the source diff carries it.
        weight = 0.5 if re.search(r"(^|/)(tests?|examples?)/|(^|/)test_", c.path) else 1.0
        for removed, added in _blocks(c.text):
            for line in removed + added:
                s = weight * support(terms, line) + (0.01 if line in added else 0) + (0.05 if removed and added else 0)
                if s > 0 and (best is None or s > best[0]):
                    best = (s, c.path, removed, added)
    if best is None:
        return []
    _, path, removed, added = best
    rm = _closest(removed, terms, limit)
    ad = _closest(added, terms, limit)
    out = [f"In {path}:"]
    out.extend(f"    before: `{line.strip()[:160]}`" for line in rm)
    out.extend(f"    after:  `{line.strip()[:160]}`" for line in ad)
    return out


def _blocks(diff: str) -> list[tuple[list[str], list[str]]]:
    """Runs of removed lines followed by added lines (one change block each) in a diff chunk's text."""
    blocks: list[tuple[list[str], list[str]]] = []
    removed: list[str] = []
    added: list[str] = []
    for line in diff.splitlines()[1:]:
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++")):
            if line[0] == "-" and added:
                blocks.append((removed, added))
                removed, added = [], []
            (removed if line[0] == "-" else added).append(line[1:])
            continue
        if removed or added:
            blocks.append((removed, added))
            removed, added = [], []
    if removed or added:
        blocks.append((removed, added))
    return [(r, a) for r, a in blocks if any(x.strip() for x in r + a)]


def _closest(lines: list[str], terms: dict[str, float], limit: int) -> list[str]:
    """The lines of one side that mention the question most, in file order (the first lines when none do)."""
    lines = [x for x in lines if x.strip()]
    ranked = sorted(range(len(lines)), key=lambda i: (-support(terms, lines[i]), i))[:limit]
    return [lines[i] for i in sorted(ranked)]


def is_history_question(question: str, hits: list[Hit]) -> bool:
    """A question about who/when/what changed, with history among the hits (an index without history: no)."""
    return bool(question_kind(question)) and any(h.chunk.kind in HISTORY_KINDS for h in hits)
