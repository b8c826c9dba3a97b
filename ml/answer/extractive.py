"""The extractive answerer: the best sentences and code lines of the top hits, each tagged with its citation."""

from __future__ import annotations

import collections
import functools
import math
import re
import time
from collections.abc import Callable

from ml.answer.base import ABSTAIN_TEXT, source_of
from ml.answer.confidence import ConfidenceModel, Evidence
from ml.answer.history import HistoryAnswerer
from ml.answer.units import (
    EXPLAINS,
    Argument,
    Example,
    arguments,
    examples,
    intent,
    is_accessor,
    raises,
    usage_from_argument,
)
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


@functools.lru_cache(maxsize=65536)
def _stems(text: str) -> frozenset[str]:
    """Stemmed content words; cached, as the same lines of a hit are scored for every intent and question."""
    return frozenset(_stem(w) for w in content_words(text))


class ExtractiveAnswerer:
    """Answers without a language model; abstains when retrieval confidence is below `threshold`."""

    name = "extractive"

    def __init__(
        self,
        threshold: float | None = None,
        max_sources: int = 3,
        max_lines: int = 10,
        model: ConfidenceModel | None = None,
        diffs: Callable[[str], list[Chunk]] | None = None,
    ):
        self.threshold = threshold
        self.diffs = diffs
        self.max_sources = max_sources
        self.max_lines = max_lines
        self.model = model

    def assess(
        self, question: str, hits: list[Hit], evidence: Callable[[], Evidence] | None = None
    ) -> tuple[float, bool]:
        """(confidence, abstain): the calibrated model's when one is given (`ml.answer.confidence`, reading the
        answer's `evidence` when trained to), else the heuristic confidence below `threshold`."""
        if self.model is not None:
            return self.model.assess(question, hits, self.threshold, evidence)
        confidence = self.confidence(question, hits)
        return confidence, confidence < (0.5 if self.threshold is None else self.threshold)

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
        history = HistoryAnswerer(max_sources=self.max_sources, name=self.name, diffs=self.diffs).answer(question, hits)
        if history is not None:
            return history
        started = time.perf_counter()
        # Composed at most once: for the confidence model's evidence, then for the answer itself.
        composed = functools.cache(lambda: self._compose(question, hits))
        confidence, abstain = self.assess(question, hits, lambda: composed()[2])
        if abstain:
            return Answer(
                answer=ABSTAIN_TEXT,
                confidence=confidence,
                abstained=True,
                sources=[],
                timings_ms={"answer_ms": (time.perf_counter() - started) * 1000},
                answerer=self.name,
            )
        text, cited, _ = composed()
        return Answer(
            answer=text,
            confidence=confidence,
            abstained=False,
            sources=[source_of(n, h) for n, h in enumerate(cited, 1)],
            timings_ms={"answer_ms": (time.perf_counter() - started) * 1000},
            answerer=self.name,
        )

    def evidence(self, question: str, hits: list[Hit]) -> Evidence:
        """What the answer to `question` from `hits` would quote (`Evidence`), for training the confidence model on
        what it reads when serving."""
        return self._compose(question, hits)[2] if hits else Evidence(coverage=0.0, lead=False)

    def _compose(self, question: str, hits: list[Hit]) -> tuple[str, list[Hit], Evidence]:
        """The answer's text, the hits it cites and its evidence."""
        q = _stems(question)
        # A property getter or setter answers nothing ("return self._load_in_4bit"): cite what explains instead.
        useful = [h for h in hits if not is_accessor(h.chunk)]
        chosen = (useful or hits)[: self.max_sources]
        lead = False
        if chosen[0].chunk.kind in HISTORY_KINDS:
            lines, gists = self._history_lines(chosen, q)
        else:
            lines, lead, gists = self._file_lines(question, chosen, q)
        # A source quoted from outside its own lines (from its whole symbol, `Hit.body`) cites the symbol's lines, so
        # the link shows what was quoted.
        cited = list(chosen)
        for n, hit in enumerate(chosen, 1):
            if hit.body is not None and _quotes_outside(lines, n, hit.chunk.text, hit.body.text):
                cited[n - 1] = hit.model_copy(update={"chunk": hit.body})
                lines = [line.replace(_where(hit.chunk), _where(hit.body)) for line in lines]
        text = "\n".join(lines[: self.max_lines])
        # The coverage the confidence model reads is of the answer's gist: a lower hit counts by its one sentence or
        # statement, as when the model was trained, not by the statements its line adds after it.
        gist = "\n".join(gists[: self.max_lines])
        coverage = len(q & _stems(gist)) / len(q) if q else 0.0
        return text, cited, Evidence(coverage=coverage, lead=lead)

    def _history_lines(self, chosen: list[Hit], q: set[str]) -> tuple[list[str], list[str]]:
        """The answer's lines for a history question, and their gists (`_see_also`)."""
        lines: list[str] = []
        gists: list[str] = []
        for n, hit in enumerate(chosen, 1):
            c = hit.chunk
            if c.kind in HISTORY_KINDS:
                line = f"{history_line(c)} [{n}]"
                lines.append(line if n == 1 else f"See also {line}")
                if n == 1 and c.kind == "diff":
                    lines.extend(f"    {code} [{n}]" for code in self._best_code_lines(c.text, q, limit=2))
                gists.extend(lines[len(gists) :])
            else:
                line, gist = self._see_also(n, c, q)
                lines.append(line)
                gists.append(gist)
        return lines, gists

    def _file_lines(self, question: str, chosen: list[Hit], q: set[str]) -> tuple[list[str], bool, list[str]]:
        """The lead the question's kind asks for, then the top hit's explaining sentence and code, then see-alsos;
        whether that lead was found (an example, an argument entry, a raise: a "why" sentence does not count); and
        the lines' gists (`_see_also`)."""
        kind = intent(question)
        lead: list[str] = []
        lead_n = 1
        if kind == "howto":
            lead, lead_n = self._usage(chosen, q | _numbered(question))
        elif kind == "default":
            lead, lead_n = self._argument_lines(chosen, q, _numbered(question))
        elif kind == "why":
            lead, lead_n = self._reason(chosen, q)
        elif kind == "error":
            lead, lead_n = self._raise_lines(chosen, q)
        found = bool(lead)
        if kind == "howto":
            # The documented arguments to set (up to two: "use X, and which shapes are supported" asks about two):
            # the lead when no example matches, else the lines after the example for those it does not name (an
            # example seldom shows the one option the question is about).
            args, args_n = self._argument_lines(chosen, q, _numbered(question), limit=2)
            if not lead:
                lead, lead_n = args, args_n
            else:
                shown_example = "\n".join(lead)
                lead = lead + [a for a in args if " argument `" in a and _argument_name(a) not in shown_example]
        shown = "\n".join(lead)
        see_also = [n for n in range(1, len(chosen) + 1) if n != lead_n and n != 1]
        budget = self.max_lines - len(lead) - min(len(see_also), 2)
        body: list[str] = []
        first = chosen[0].chunk
        if lead_n != 1 or not lead:
            sentence = _shorten(self._best_sentence(_body(first), q, exclude=shown), 220)
            head = f"{_label(first)} in {_where(first)}"
            body.append(f"{head}: {sentence} [1]" if sentence else f"{head} [1]")
        elif budget > 1 and first.kind not in ("argument", "example"):  # the lead quoted all it says
            sentence = _shorten(self._best_sentence(_body(first), q, exclude=shown), 220)
            if sentence:
                body.append(f"{sentence} [1]")
        code_room = max(0, budget - len(body))
        # The code is the top hit's whole symbol when the pipeline fetched it: a split function's other part or the
        # function an argument documents holds the statements the hit itself lacks.
        # A documented argument asked about is answered by its own entry, not by the rest of its class.
        own = kind in ("default", "error", "howto") and first.kind in ("argument", "example")
        source = first if own else chosen[0].body or first
        if kind in ("error", "howto", "default") or source.kind not in CODE_KINDS:
            code = self._best_code_lines(
                _body(source),
                q,
                limit=code_room,
                exclude=shown + "\n".join(body),
                code_only=kind == "error" or (kind == "howto" and bool(lead)),
                values=kind == "default",
            )
        else:
            code = self._code_window(_body(source), q, code_room, exclude=shown + "\n".join(body))
        body.extend(f"    {line} [1]" for line in code)
        lines = lead + body
        gists = list(lines)
        for n in see_also:
            if len(lines) >= self.max_lines:
                break
            line, gist = self._see_also(n, chosen[n - 1].chunk, q, chosen[n - 1].body)
            lines.append(line)
            gists.append(gist)
        return lines, found, gists

    def _see_also(self, n: int, c: Chunk, q: set[str], body: Chunk | None = None) -> tuple[str, str]:
        """One line for a lower hit: its sentence that shares most with the question; for code, that sentence when
        it shares two words or more, then the three consecutive statements of its whole symbol (`body`) that share
        most. A lower hit is often the one that answers (the pooler under the heads that use it): its statements
        say what it does, which its docstring's first sentence seldom does. Also the line's gist, the one sentence
        or statement it would say alone: the sentence, or for code whose sentence shares under two words, the
        statement that shares most."""
        if c.kind in HISTORY_KINDS:
            line = f"See also {history_line(c)} [{n}]"
            return line, line
        sentence = self._best_sentence(_body(c), q)
        code = body is not None or c.kind in CODE_KINDS
        detail = gist = ""
        if code:
            said = _shorten(sentence, 160) if len(q & _stems(sentence)) >= 2 else ""
            detail = " ".join([said, *self._code_window(_body(body or c), q, SEE_ALSO_STATEMENTS)]).strip()
            if not said:
                gist = next(iter(self._code_window(_body(body or c), q, 1)), "")
        if not detail or not gist:
            code_lines = self._best_code_lines(_body(c), q, limit=1)
            fallback = _shorten(sentence, 160) or (code_lines[0] if code_lines else "")
            detail, gist = detail or fallback, gist or fallback
        line, short = (f"See also {_label(c)} ({_where(c)}): {d} [{n}]" if d else f"See also {_label(c)} [{n}]"
                       for d in (detail, gist))  # fmt: skip
        return line, short

    def _usage(self, chosen: list[Hit], q: set[str]) -> tuple[list[str], int]:
        """The usage example (docstring `>>>` session, code fence or example chunk) that best matches the question."""
        best: tuple[float, int, Example] | None = None
        for n, hit in enumerate(chosen, 1):
            owner = hit.chunk.symbol.split(".")[0]
            for ex in _unique(examples(hit.chunk) + (examples(hit.body) if hit.body else [])):
                if INSTRUCTION_LIKE.search(" ".join(ex.lines)):
                    continue
                text = " ".join(ex.lines)
                # An example from a lower hit must show clearly more of the question than the top hit does.
                score = len(q & _stems(text)) + (0.5 if owner and owner in text else 0.0) - 1.0 * (n - 1)
                if best is None or score > best[0]:
                    best = (score, n, ex)
        if best is None or best[0] < 2:  # an example that only names the class does not show how
            return [], 1
        _, n, ex = best
        c = chosen[n - 1].chunk
        owner = c.symbol.split(".")[-1] if c.symbol else ""
        # A call written over several lines is one statement: its keyword arguments are what the question is about.
        statements = _statements(ex.lines)
        keep = [
            i
            for i, line in enumerate(statements)
            if q & _stems(line) or (owner and owner in line) or re.search(r"\w\(.*=", line)
        ]
        if len(statements) <= 4:
            keep = list(range(len(statements)))
        keep = keep[:4] or list(range(min(3, len(statements))))
        lines = [f"Usage from {_label(c)} ({_where(c)}): [{n}]"]
        lines.extend(f"    `{_shorten(statements[i], 240)}` [{n}]" for i in keep)
        return lines, n

    def _argument_lines(
        self, chosen: list[Hit], q: set[str], numbered: set[str], limit: int = 2
    ) -> tuple[list[str], int]:
        """The documented argument(s) the question is about, each with its default quoted as written."""
        scored: list[tuple[float, int, Argument]] = []
        for n, hit in enumerate(chosen, 1):
            risky = _risky(hit.chunk.text)
            # An argument entry retrieved alone has siblings: the symbol's other documented arguments.
            for arg in _unique_by_name(arguments(hit.chunk) + (arguments(hit.body) if hit.body else [])):
                if risky and INSTRUCTION_LIKE.search(f"{arg.head} {arg.description}"):
                    continue
                score = (
                    3 * len(_named(arg.name, q))
                    + min(3, len(q & _stems(arg.description)))
                    + (0.5 if arg.default else 0.0)
                )
                # "4-bit" is the `load_in_4bit` flag, not `load_in_8bit`: numbered terms must match as written.
                score += 2 * sum(1 for term in numbered if term in arg.name.lower().replace("_", ""))
                if score > 0:
                    scored.append((score - 0.01 * n, n, arg))
        if not scored:
            return [], 1
        scored.sort(key=lambda t: -t[0])
        _, n, top = scored[0]
        # A question about two settings ("the epsilon pair and the decay rate") gets the argument that names what the
        # first one does not.
        covered = _named(top.name, q)
        picked = [(n, top)]
        for _, m, a in scored[1:12]:
            new = _named(a.name, q) - covered
            if a.name != top.name and new:
                picked.append((m, a))
                covered |= new
            if len(picked) >= limit:
                break
        lines = []
        c = chosen[n - 1].chunk
        usage = usage_from_argument(c, top)
        if usage:
            lines.append(f"Set `{top.name}` of {_label(c)} ({_where(c)}), for example: [{n}]")
            lines.append(f"    `{usage}` [{n}]")
        for m, arg in picked[:limit]:
            owner = _label(chosen[m - 1].chunk)
            desc = _shorten(arg.description, 200)
            lines.append(f"{owner} argument `{arg.head.rstrip(':')[:160]}`" + (f": {desc}" if desc else "") + f" [{m}]")
        return lines, n

    def _reason(self, chosen: list[Hit], q: set[str]) -> tuple[list[str], int]:
        """The sentence or comment that explains (because, so that, to avoid, otherwise, when ...)."""
        best: tuple[float, int, str] | None = None
        for n, hit in enumerate(chosen, 1):
            for sentence in _sentences(hit.chunk.text):
                overlap = len(q & _stems(sentence))
                if not overlap:
                    continue
                score = overlap + (1.0 if EXPLAINS.search(sentence) else 0.0) - 0.3 * (n - 1)
                if best is None or score > best[0]:
                    best = (score, n, sentence)
        if best is None:
            return [], 1
        _, n, sentence = best
        c = chosen[n - 1].chunk
        return [f"{_label(c)} in {_where(c)}: {_shorten(sentence, 260)} [{n}]"], n

    def _raise_lines(self, chosen: list[Hit], q: set[str]) -> tuple[list[str], int]:
        """The `raise` whose message matches the question, with its guarding condition."""
        best: tuple[float, int, tuple[str, ...]] | None = None
        for n, hit in enumerate(chosen, 1):
            own = raises(hit.chunk)
            for r in _unique(own + (raises(hit.body) if hit.body else [])):
                text = " ".join(r.lines)
                if INSTRUCTION_LIKE.search(text):
                    continue
                # A raise elsewhere in the hit's symbol counts less than one in the lines retrieval matched.
                score = len(q & _stems(text)) - 0.3 * (n - 1) - (0.0 if r in own else 1.0)
                if best is None or score > best[0]:
                    best = (score, n, r.lines)
        if best is None or best[0] <= 0:
            return [], 1
        _, n, raise_lines = best
        c = chosen[n - 1].chunk
        lines = [f"Raised in {_label(c)} ({_where(c)}): [{n}]"]
        lines.extend(f"    `{line[:160]}` [{n}]" for line in raise_lines[:5])
        return lines, n

    def _best_sentence(self, text: str, q: set[str], exclude: str = "") -> str:
        """The prose sentence (docstring, comment or doc text) sharing most words with the question."""
        best, best_score = "", 0.0
        for sentence in _sentences(text):
            if sentence[:60] in exclude:
                continue
            overlap = len(q & _stems(sentence))
            score = overlap + 0.1 / (1 + len(sentence) / 200)
            if score > best_score:
                best, best_score = sentence, score
        return best[:300] + ("..." if len(best) > 300 else "")

    def _code_window(self, text: str, q: set[str], limit: int, exclude: str = "") -> list[str]:
        return [f"`{text.splitlines()[i].strip()[:160]}`" for i in statement_window(text, q, limit, exclude)]

    def _best_code_lines(
        self, text: str, q: set[str], limit: int, exclude: str = "", code_only: bool = False, values: bool = False
    ) -> list[str]:
        """Lines sharing most words with the question; with `code_only`, never a docstring line (prose is quoted as
        sentences), and statements before parameter lines; with `values` (a question about a default), lines that
        set a literal value first."""
        if limit <= 0:
            return []
        in_doc = _docstring_lines(text) if code_only else set()
        headers = _signature_lines(text)
        risky = _risky(text)
        scored = []
        seen: set[str] = set()
        for i, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if (
                not stripped
                or stripped in seen
                or (code_only and i in in_doc)
                or i in headers
                or stripped.startswith("class ")
                or stripped.startswith(("#", "@", '"""', "'''", "module ", "Defines: ", ">>>"))
                or (risky and INSTRUCTION_LIKE.search(stripped))
                or stripped.rstrip(":")[:160] in exclude
            ):
                continue
            seen.add(stripped)
            overlap = len(q & _stems(stripped))
            if overlap:
                # For an error, a statement (assignment, call, return, condition) says more than a parameter line.
                # (Tried for every kind, weighting docstring lines down: no better on the tuning half.)
                weight = overlap + (0.5 if code_only and _STATEMENT.search(stripped) else 0.0)
                weight += 1.0 if values and _LITERAL.search(stripped) else 0.0
                scored.append((weight, -i, stripped[:160]))
        scored.sort(reverse=True)
        return [f"`{line}`" for _, _, line in scored[:limit]]


def statement_window(text: str, q: set[str], limit: int, exclude: str = "") -> list[int]:
    """Line indexes of the `limit` consecutive statements of a function or class that share most words with the
    question `q` (stems): what it does reads in order (the lines around a matching one hold the names it works
    with); docstrings, the function's own signature and lines already in `exclude` left out. Empty when no statement
    shares a word."""
    if limit <= 0:
        return []
    all_lines = text.splitlines()
    skip = _docstring_lines(text) | _signature_lines(text)
    risky = _risky(text)
    lines: list[tuple[float, int]] = []
    # A question word found on many lines ("scan" in a scan function) says less about where to look than one found
    # once: each counts 1 / (lines holding it).
    seen = collections.Counter(w for line in all_lines for w in q & _stems(line))
    credit = 0.0  # a comment's words count for the statement it introduces, which is what gets quoted
    for i, line in enumerate(all_lines):
        stripped = line.strip()
        if stripped.startswith("#") and i not in skip:
            credit += sum(1 / seen[w] for w in q & _stems(stripped))
            continue
        if (
            not stripped
            or i in skip
            or _BARE.match(stripped)
            or stripped.startswith(("@", "class "))
            or (risky and INSTRUCTION_LIKE.search(stripped))
            or stripped.rstrip(":")[:160] in exclude
        ):
            continue
        lines.append((sum(1 / seen[w] for w in q & _stems(stripped)) + credit, i))
        credit = 0.0
    if not lines:
        return []
    scores = [w for w, _ in lines]
    start = max(range(max(1, len(lines) - limit + 1)), key=lambda i: (round(sum(scores[i : i + limit]), 6), i))
    window = lines[start : start + limit]
    return [i for _, i in window] if sum(w for w, _ in window) else []


CODE_KINDS = frozenset({"function", "method", "class"})
# Statements a lower code hit's line quotes, after its sentence: one statement in place of the sentence -> three
# beside it took facts present from 0.560 to 0.643 on the tuning half (0.405 to 0.452 on the test half).
SEE_ALSO_STATEMENTS = 3
# A line that only closes brackets (`)`, `]),`) says nothing on its own: quoted, it takes the room of one that does.
_BARE = re.compile(r"^[)\]}]+[,:]?$")
_STATEMENT = re.compile(r"^(return|if|elif|for|while|raise)\b|[^=!<>]=[^=]|\w\(")
_QUOTES = ('"""', "'''")
# `x = 1`, `eps=(1e-30, 1e-3)`, `default="adamw_torch"`: a line that sets a value as written.
_LITERAL = re.compile(r"""[^=!<>]=\s*\(?\s*(-?\d[\w.+-]*|True|False|None|"[^"]*"|'[^']*')""")


def _statements(lines: tuple[str, ...]) -> list[str]:
    """Code lines joined into statements: a line that leaves a bracket open continues on the next ones
    ("Adafactor(", "lr=1e-3,", ")" -> "Adafactor(lr=1e-3)"). A comment is a statement of its own, and one inside an
    open call is left out (joined, it would comment out the rest of the line)."""
    out: list[str] = []
    parts: list[str] = []
    depth = 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            if not parts:
                out.append(stripped)
            continue
        parts.append(stripped)
        depth += sum(stripped.count(ch) for ch in "([{") - sum(stripped.count(ch) for ch in ")]}")
        if depth <= 0 or len(parts) >= 20:  # 20 lines: a bracket inside a string never closes
            out.append(_joined(parts))
            parts, depth = [], 0
    if parts:
        out.append(_joined(parts))
    return out


def _joined(parts: list[str]) -> str:
    """Lines of one statement on one line, without the space after an opening bracket or a trailing comma."""
    joined = re.sub(r"([(\[{])\s+", r"\1", " ".join(parts))
    return re.sub(r",?\s+(?=[)\]}])|,(?=[)\]}])", "", joined)


def _unique_by_name(args: list[Argument]) -> list[Argument]:
    seen: set[str] = set()
    return [a for a in args if not (a.name in seen or seen.add(a.name))]


def _quotes_outside(lines: list[str], n: int, own: str, body: str) -> bool:
    """Whether a line citing [n] quotes code or an argument entry found in `body` but not in the hit's `own` text."""
    tag = f" [{n}]"
    for line in lines:
        if not line.endswith(tag):
            continue
        quote = ""
        if line.startswith("    `"):
            quote = line[: -len(tag)].strip()[1:-1]
        elif " argument `" in line:
            quote = re.split(r"`(?::| \[)", line.split(" argument `", 1)[1], maxsplit=1)[0]
        if quote and quote not in own and quote in body:
            return True
    return False


def _unique(items: list) -> list:
    """`items` without repeats, first occurrence kept (a hit's own examples or raises, then its symbol's)."""
    return list(dict.fromkeys(items))


def _signature_lines(text: str) -> set[int]:
    """0-based indexes of every function definition header in `text` (a function's own, or each method's in a
    class's code): its `def` line through the line that closes its parameters, and the "(continued, part N of M)"
    line a later part carries. Parameters restate the question's words without saying what the code does."""
    lines = text.splitlines()
    out: set[int] = set()
    i = 0
    while i < len(lines):
        if not re.match(r"(async\s+)?def\s", lines[i].strip()):
            i += 1
            continue
        depth = 0
        # A header longer than 40 lines is not one (a prose line starting with "def"): stop marking there.
        for j in range(i, min(len(lines), i + 40)):
            stripped = lines[j].strip()
            out.add(j)
            depth += stripped.count("(") + stripped.count("[") - stripped.count(")") - stripped.count("]")
            if depth <= 0 and re.search(r":\s*(#.*)?$", stripped):
                if j + 1 < len(lines) and lines[j + 1].strip().startswith("... (continued, part"):
                    out.add(j + 1)
                break
        i = j + 1
    return out


def question_stems(text: str) -> frozenset[str]:
    """The stemmed content words of a question, as every line of an answer is scored against them."""
    return _stems(text)


def _docstring_lines(text: str) -> set[int]:
    """0-based indexes of the lines inside triple-quoted strings, their quote lines included."""
    inside: set[int] = set()
    open_quote = ""
    for i, line in enumerate(text.splitlines()):
        toggled = False
        for quote in _QUOTES:
            if open_quote in ("", quote) and line.count(quote) % 2 == 1:
                open_quote = "" if open_quote else quote
                toggled = True
                break
        if toggled or open_quote or line.strip().startswith(_QUOTES):
            inside.add(i)
    return inside


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


def _named(name: str, q: set[str]) -> set[str]:
    """Question words an argument's name says; a name part also matches a word it abbreviates (`eps`, "epsilon")."""
    parts = _stems(name.replace("_", " "))
    return {w for w in q for t in parts if w == t or (len(t) >= 3 and w.startswith(t))}


def _argument_name(line: str) -> str:
    """The argument's name in a line written by `_argument_lines` ("`Owner` argument `name (...)`: ...")."""
    match = re.search(r" argument `(\w+)", line)
    return match.group(1) if match else line


def _numbered(question: str) -> set[str]:
    """Terms with a digit as the question writes them, hyphens dropped: "4-bit" -> "4bit", "fp16" -> "fp16"."""
    tokens = re.findall(r"[a-z0-9]+", question.lower().replace("-", ""))
    return {t for t in tokens if any(ch.isdigit() for ch in t) and any(ch.isalpha() for ch in t)}


@functools.lru_cache(maxsize=256)
def _sentences(text: str) -> tuple[str, ...]:
    """Prose sentences of a chunk long enough to say something, never an instruction-like one."""
    out = []
    risky = _risky(text)
    for sentence in SENTENCE.split(_prose(text)):
        sentence = " ".join(sentence.split())
        if len(sentence) >= 20 and not (risky and INSTRUCTION_LIKE.search(sentence)):
            out.append(sentence)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _risky(text: str) -> bool:
    """Whether any part of `text` reads like an instruction; only then is each part checked (one search, not 1000)."""
    return INSTRUCTION_LIKE.search(text) is not None


def _body(c: Chunk) -> str:
    """A chunk's text without the heading line an argument or example chunk starts with ("X argument `name`")."""
    if c.kind in ("argument", "example") and "\n" in c.text:
        head, rest = c.text.split("\n", 1)
        if head.startswith(c.symbol) and (" argument `" in head or head.endswith("usage example")):
            return rest
    return c.text


def _label(c: Chunk) -> str:
    return f"`{c.symbol}`" if c.symbol else f"`{c.path}`"


def _where(c: Chunk) -> str:
    return f"{c.path}:{c.start_line}-{c.end_line}"


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
