"""Answers to history questions: who made a change and when, in which PR, what it changed, since when.

The retrieved commit and diff chunks are grouped per commit; a commit *supports* the question when its message and
diff contain the question's key terms (identifiers count more than plain words). Below `SUPPORT_THRESHOLD` no
commit supports the claim the question makes, and the answer says the history has no such change instead of citing
the nearest commit. The threshold is calibrated on questions about changes that did and did not happen
(`bench/history_eval.py`, tune split). Words are not enough when the question claims a kind of change: a claim check
(`claim_checks`) then asks the commit's whole diff whether it removes what the question names, sets its default, or
adds it (its rarest term beside another of its terms on one line), and a commit that only mentions the same words
supports nothing.

    kind = question_kind("Who changed the default of lora_dropout?")      # "who"
    answer = answer_history(question, hits)                                # None when not a history question
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ml.answer.base import source_of
from ml.retrieve import words
from ml.types import HISTORY_KINDS, Answer, Chunk, Hit

# Calibrated on the tune split of ml/eval/data/history_peft.jsonl (bench/history_eval.py --calibrate picks 0.60 on a
# full peft ingest; test split there: answers with what was asked 0.86, never-happened abstained 0.83). On accelerate
# (ml/eval/data/history_accelerate.jsonl) its tune split picks 0.30. Never-happened questions whose words all occur
# ("made fp8 the default") are abstained on by the claim check, not by this threshold.
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
    def message(self) -> str:
        """The commit message (subject and body), without the header and the list of changed files."""
        for c in self.chunks:
            if c.kind == "commit":
                text = c.text.split("\n\n", 1)[1] if c.text.startswith("commit ") and "\n\n" in c.text else c.text
                return text.split("\nFiles changed", 1)[0]
        return self.subject

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
    # Every diff chunk of a commit, by SHA (`ml.retrieve_history.fetch_diffs`): the before/after is taken from the
    # chosen commit's whole diff, not only from the diff chunks retrieval happened to return. Support and the
    # abstention decision stay on the retrieved evidence.
    diffs: Callable[[str], list[Chunk]] | None = None

    def answer(self, question: str, hits: list[Hit]) -> Answer | None:
        """The history answer, an abstention when no commit supports the question, or None when not history."""
        started = time.perf_counter()
        kind = question_kind(question)
        commits = group_commits(hits)
        if not kind or not commits:
            return None
        terms = distinctive(key_terms(question), [ev.text() for ev in commits])
        scored = [(support(terms, ev.text()), ev) for ev in commits]
        # The claim check: a question claims a change of a kind (something removed, a default set), and a commit
        # supports it only when it makes a change of that kind to what the question names; one that merely mentions
        # the same words ("Which PR made fp8 the default?" against a doc edit beside "By default ... FP8") does not.
        # Only commits supported well enough to be answered from are checked, against their whole diff.
        checks = claim_checks(question, kind, [ev.text() for ev in commits])
        whole: dict[str, CommitEvidence] = {}

        def whole_diff(ev: CommitEvidence) -> CommitEvidence:
            if ev.sha not in whole:
                whole[ev.sha] = self._whole_diff(ev)
            return whole[ev.sha]

        if checks:
            scored = [
                (0.0 if s >= self.threshold and not all(check(whole_diff(ev)) for _, check in checks) else s, ev)
                for s, ev in scored
            ]
        best = max(s for s, _ in scored)
        timings = lambda: {"answer_ms": (time.perf_counter() - started) * 1000}  # noqa: E731
        if best < self.threshold or best == 0.0:
            missing = [t for t in terms if not any(support({t: terms[t]}, ev.text()) for _, ev in scored)]
            why = f": no commit message or diff mentions {', '.join(missing[:4])}" if missing else ""
            if checks and not missing:
                what = " and ".join(claim for claim, _ in checks)
                why = f": no commit {what} {', '.join(list(claim_terms(question))[:4])}"
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
        lines = self._lines(kind, chosen, terms, whole_diff(chosen))
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

    def _whole_diff(self, ev: CommitEvidence) -> CommitEvidence:
        """`ev` with the commit's diff chunks that were not retrieved added after the retrieved ones."""
        if self.diffs is None:
            return ev
        have = {c.id for c in ev.chunks}
        extra = [c for c in self.diffs(ev.sha) if c.id not in have]
        return CommitEvidence(ev.sha, ev.rank, ev.score, [*ev.chunks, *extra], ev.hit_numbers)

    def _lines(self, kind: str, ev: CommitEvidence, terms: dict[str, float], diff: CommitEvidence) -> list[str]:
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
        lines.extend(before_after(diff, terms))
        return lines


# A question about taking something out ("when was Python 3.8 dropped?"): answered from a commit that removes what
# it names, not from the one that added it ("Require Python 3.8").
_REMOVAL = re.compile(r"\b(remov|drop|delet|deprecat|discontinu|got rid)\w*", re.I)


# A question that claims a default was set ("When did use_dora become True by default?", "Who made
# safe_serialization the default?"): answered from a commit that says so or edits a default, not from any commit that
# names the same thing.
_DEFAULT = re.compile(r"\bdefault", re.I)
# The value a line gives as a default: `default=True`, `default: 8`, "defaults to `HYBRID`".
# Prose after "default" is not a value ("Will default to the value of ..."): after `to`/`is` it must be quoted.
_DEFAULT_VALUE = re.compile(r"default(?:s)?(?:\s*[=:]\s*[\"'`(\[]*|\s+(?:to|is)\s+[\"'`]+)([\w.+-]+)", re.I)
# How many words apart "default" and what the question names may stand in a commit message and still say one thing
# ("Make safe serialization the default", "Default to loading weights_only"; not "Tweak defaults for quantized-typed
# FP8 TE weights" for "made fp8 the default"). Tuned on the tune splits of the history dev sets.
_DEFAULT_WINDOW = 3


def claim_terms(question: str) -> dict[str, float]:
    """The question's key terms without the words its identifiers are made of ("tensor" and "flow" of TensorFlow
    are the identifier, not two more things the claim names)."""
    terms = key_terms(question)
    parts = {p for m in _IDENT.finditer(question) for p in words(m.group(1) or m.group(2) or "")}
    return {t: w for t, w in terms.items() if w > 1 or t not in parts}


def claim_checks(question: str, kind: str, texts: list[str]) -> list[tuple[str, Callable[[CommitEvidence], bool]]]:
    """The kinds of change the question claims, each with the check a commit must pass to support it.

    Args:
        question: The history question.
        kind: Its kind (`question_kind`).
        texts: The evidence text of each retrieved commit (how rare each of the question's terms is among them).
    """
    own = claim_terms(question)
    checks: list[tuple[str, Callable[[CommitEvidence], bool]]] = []
    if _REMOVAL.search(question) and kind != "first":
        checks.append(("removes", lambda ev: removes(ev, own)))
    if _DEFAULT.search(question):
        checks.append(("sets the default of", lambda ev: sets_default(ev, own)))
    if _ADDITION.search(question) and not checks and kind != "what" and len(own) > 1:
        share = {t: sum(mentions(t, text, w) for text in texts) / max(len(texts), 1) for t, w in own.items()}
        rarest = min(own, key=lambda t: (share[t], -own[t]))
        # A term every retrieved commit names (the repository's own name) tells nothing about where the claim is.
        others = {t: w for t, w in own.items() if t != rarest and share[t] < 1}
        if others:
            checks.append(("adds", lambda ev: introduces(ev, rarest, own[rarest], others)))
    return checks


# A question that claims something was added ("Who added a TensorFlow backend to accelerate launch?").
_ADDITION = re.compile(r"\b(add(s|ed|ing)?|introduc\w*|implement\w*)\b", re.I)


def introduces(ev: CommitEvidence, rarest: str, weight: float, others: dict[str, float]) -> bool:
    """Whether the commit adds the thing the question names: one line of its message, or one line it adds, names the
    question's rarest term together with another of its terms; or it adds the rarest term somewhere and a line of its
    message names two of the others ("Add dynamic rope scaling" adding `scaling_factor=1.0`, for "Which PR added
    dynamic rope scaling with scaling_factor?"). A commit that adds `"tensorflow"` to a list of test extras names
    TensorFlow, but adds no TensorFlow backend."""
    message = ev.message.splitlines()
    lines = list(message)
    for c in ev.chunks:
        if c.kind == "diff":
            lines.extend(x[1:] for x in c.text.splitlines()[1:] if x.startswith("+") and not x.startswith("+++"))
    with_rarest = [line for line in lines if mentions(rarest, line, weight)]
    if any(mentions(t, line, w) for line in with_rarest for t, w in others.items()):
        return True
    return bool(with_rarest) and any(sum(mentions(t, line, w) for t, w in others.items()) >= 2 for line in message)


def _names(terms: dict[str, float]) -> list[str]:
    """The identifiers and numbers among the question's terms (all its terms when it names none)."""
    return [t for t, w in terms.items() if w > 1] or list(terms)


def mentions(term: str, text: str, weight: float = 1.0) -> bool:
    """Whether the text names the term: an identifier or number (weight above 1) anywhere in it, also as the words
    it is made of ("safe serialization"); a plain word as a word, or inside a word as written ("LoRA" in "X-LoRA",
    which `words` splits)."""
    lowered = text.lower()
    if weight > 1 or "_" in term:
        return term in lowered or ("_" in term and term.replace("_", " ") in lowered)
    return support({term: 1.0}, lowered) > 0 or re.search(rf"\b{re.escape(term)}", lowered) is not None


def _near_default(text: str, terms: dict[str, float], window: int = _DEFAULT_WINDOW) -> bool:
    """Whether "default" and one of the terms (as its words: `safe_serialization` is "safe serialization") stand at
    most `window` words apart in the text."""
    tokens = [_stem(w) for w in words(text)]
    defaults = [i for i, w in enumerate(tokens) if w.startswith("default")]
    if not defaults:
        return False
    for term in terms:
        parts = [_stem(w) for w in words(term)]
        for i in range(len(tokens) - len(parts) + 1):
            if parts and tokens[i : i + len(parts)] == parts:
                if any(i - window <= d <= i + len(parts) - 1 + window for d in defaults):
                    return True
    return False


def removes(ev: CommitEvidence, terms: dict[str, float]) -> bool:
    """Whether the commit takes out what the question names: its subject says it removes something the question
    names, or its diff removes mentions of one of the question's names (identifiers, numbers) and adds none back.
    A rewrite that removes old lines naming it and adds new ones ("DeepSpeed Revamp") removes nothing."""
    subject = ev.subject
    if _REMOVAL.search(subject) and any(mentions(t, subject, terms[t]) for t in _names(terms)):
        return True
    names = _names(terms)
    removed = dict.fromkeys(names, 0)
    added = dict.fromkeys(names, 0)
    for c in ev.chunks:
        if c.kind != "diff":
            continue
        for line in c.text.splitlines()[1:]:
            if line[:1] in "+-" and not line.startswith(("+++", "---")):
                side = removed if line[0] == "-" else added
                for n in names:
                    side[n] += n in line.lower()
    return any(removed[n] and not added[n] for n in names)


def _names_token(name: str, line: str) -> bool:
    """Whether the line names `name` as a whole identifier (`fp8`, not the `fp8` inside `fp8_format`)."""
    if not re.fullmatch(r"\w+", name):
        return name in line.lower()
    return name in re.findall(r"\w+", line.lower())


def sets_default(ev: CommitEvidence, terms: dict[str, float]) -> bool:
    """Whether the commit sets a default of what the question names: its message says "default" next to something
    the question names, or it edits a line naming one of the question's identifiers so that the value the line gives
    as its default changes (`default=False` -> `default=True`, `attn_implementation="eager"` -> `="sdpa"`; not a new
    docstring that says "by default", nor a reworded sentence beside "default")."""
    if _near_default(ev.message, terms):
        return True
    names = _names(terms)
    for c in ev.chunks:
        if c.kind != "diff":
            continue
        for removed, added in _blocks(c.text):
            for old, new in _edits(removed, added):
                if not any(_names_token(n, new) for n in names):
                    continue
                value = {v.lower() for v in _DEFAULT_VALUE.findall(new)}
                if value and value != {v.lower() for v in _DEFAULT_VALUE.findall(old)}:
                    return True
                if any(None is not _assigned(n, old) != _assigned(n, new) is not None for n in names):
                    return True
    return False


def _assigned(name: str, line: str) -> str | None:
    """The literal a line gives the identifier `name` as a parameter or field default (`name="sdpa"`,
    `name: float = 0.1`, in a `def` or on a line of its own), or None: no literal (`use_dora=use_dora`), or an
    argument of a call (`Accelerator(gradient_accumulation_steps=2)` passes a value, it sets no default)."""
    if not re.fullmatch(r"\w+", name):
        return None
    m = re.search(rf"\b{name}\s*(?::[^=,()]*)?=(?!=)\s*([^,)]+)", line, re.I)
    if m is None or not _LITERAL.fullmatch(m.group(1).strip()):
        return None
    if re.search(r"\w\(", line[: m.start()]) and not line.lstrip().startswith(("def ", "async def ")):
        return None
    return m.group(1).strip()


_LITERAL = re.compile(r"""-?[\d.]+(e-?\d+)?|True|False|None|"[^"]*"|'[^']*'|int\([\d.e]+\)""")


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
    """The removed and added lines that carry the change, paired, and the changed value itself.

    A line edited in place (a removed line and a similar added line of one hunk) where both sides mention what the
    question asks is the change itself: "What changed in the default of lora_alpha?" wants `default=None` next to
    `default=8`, not the first added line that names lora_alpha. Otherwise the best-matching changed line and its
    counterpart on the other side of the same hunk (an addition alone when nothing was removed).
    """
    best: tuple[float, str, list[str], list[str]] | None = None
    edit: tuple[float, str, str, str] | None = None
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
            for old, new in _edits(removed, added):
                sides = support(terms, old), support(terms, new)
                s = weight * sum(sides) / 2
                if min(sides) > 0 and (edit is None or s > edit[0]):
                    edit = (s, c.path, old, new)
    if edit is not None and best is not None and edit[0] >= 0.5 * best[0]:
        _, path, old, new = edit
        out = [f"In {path}:", f"    before: `{old.strip()[:160]}`", f"    after:  `{new.strip()[:160]}`"]
        changed = changed_span(old, new)
        if changed:
            out.append(f"    changed: `{changed[0]}` -> `{changed[1]}`")
        return out
    if best is None:
        return []
    _, path, removed, added = best
    rm = _closest(removed, terms, limit)
    ad = _closest(added, terms, limit)
    out = [f"In {path}:"]
    out.extend(f"    before: `{line.strip()[:160]}`" for line in rm)
    out.extend(f"    after:  `{line.strip()[:160]}`" for line in ad)
    return out


# Lines at least this similar (difflib ratio) are one line edited in place, not a removal and an unrelated addition.
_EDIT_RATIO = 0.6
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
# Characters that end a value when the changed span is widened to whole values (`>=3.8.0`, not `8`).
_VALUE_END = set(" \t\"'`,;:()[]{}=")


def _edits(removed: list[str], added: list[str]) -> list[tuple[str, str]]:
    """Removed lines paired with the added line of the same block most similar to each, when similar enough."""
    from difflib import SequenceMatcher

    pairs = []
    for old in removed:
        if not old.strip():
            continue
        scored = [(SequenceMatcher(None, old.strip(), new.strip(), autojunk=False).ratio(), new) for new in added]
        ratio, new = max(scored, default=(0.0, ""), key=lambda t: t[0])
        if ratio >= _EDIT_RATIO and old.strip() != new.strip():
            pairs.append((old, new))
    return pairs


def changed_span(old: str, new: str, limit: int = 80) -> tuple[str, str] | None:
    """The part of a line an in-place edit changed, widened to whole values: (`False`, `True`) for
    `safe_serialization: bool = False` -> `... = True`; None when the edit spans most of the line."""
    from difflib import SequenceMatcher

    a, b = _TOKEN.findall(old.strip()), _TOKEN.findall(new.strip())
    ops = [op for op in SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return None
    a_text, b_text = "".join(a), "".join(b)
    a_start, a_end = len("".join(a[: ops[0][1]])), len("".join(a[: ops[-1][2]]))
    b_start, b_end = len("".join(b[: ops[0][3]])), len("".join(b[: ops[-1][4]]))

    # Widen both sides by the same shared context, so they stay aligned, until a value ends on each; a pure
    # insertion or deletion also takes the next shared character (`(` -> `field(`), so neither side is empty.
    def value_goes_on(i: int, j: int) -> bool:
        return a_text[i] not in _VALUE_END and b_text[j] not in _VALUE_END

    while a_start > 0 and b_start > 0 and value_goes_on(a_start - 1, b_start - 1):
        a_start, b_start = a_start - 1, b_start - 1
    while a_end < len(a_text) and b_end < len(b_text) and value_goes_on(a_end, b_end):
        a_end, b_end = a_end + 1, b_end + 1
    if (a_start == a_end or b_start == b_end) and a_end < len(a_text) and b_end < len(b_text):
        a_end, b_end = a_end + 1, b_end + 1
    before, after = a_text[a_start:a_end].strip(), b_text[b_start:b_end].strip()
    if not (before or after) or max(len(before), len(after)) > limit:
        return None
    if len(before) + len(after) > 0.6 * (len(a_text) + len(b_text)):
        return None  # most of the line: the before and after lines say it already
    return before, after


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
