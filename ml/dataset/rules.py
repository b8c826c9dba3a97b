"""Rule-based QA pairs from indexed chunks: code (purpose, arguments, defaults, members), docs, commits, issues."""

from __future__ import annotations

import ast
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ml.dataset.types import QAPair, SourceRef
from ml.types import Chunk

GENERATOR = "rules-v1"
MAX_CONTEXT_CHARS = 6000
MAX_LIST = 20
_DOCSTRING = re.compile(r'\s*[rRuU]?("""|\'\'\')(.*?)\1', re.S)
_MEMBER = re.compile(r"^    (?:async )?def (\w+)\(", re.M)
CODE_KINDS = {"class", "function", "method"}
_SKIP_SUMMARY = re.compile(r"^(copied from|overrides?|see |this method is|deprecated)", re.I)


@dataclass(frozen=True)
class Draft:
    """A pair before validation: no id, split or timestamp yet."""

    category: str
    question: str
    answer: str
    context: str
    chunk: Chunk
    must_mention: tuple[str, ...] = ()
    persona: str = "developer"
    generator: str = GENERATOR


def pair_id(category: str, chunk_id: str, question: str) -> str:
    """Stable id: the same chunk and question always give the same id."""
    return hashlib.sha256(f"{category}\x1f{chunk_id}\x1f{question}".encode()).hexdigest()[:16]


def source_ref(chunk: Chunk) -> SourceRef:
    return SourceRef(
        kind=chunk.kind,
        path=chunk.path,
        start_line=chunk.start_line,
        end_line=chunk.end_line,
        symbol=chunk.symbol,
        commit=chunk.commit,
        issue=chunk.issue,
        pr=chunk.pr,
        url=chunk.url,
        chunk_id=chunk.id,
        date=chunk.date,
    )


def to_pair(draft: Draft, created_at: str) -> QAPair:
    return QAPair(
        id=pair_id(draft.category, draft.chunk.id, draft.question),
        category=draft.category,  # type: ignore[arg-type]
        question=draft.question,
        answer=draft.answer,
        context=draft.context,
        source=source_ref(draft.chunk),
        generator=draft.generator,
        created_at=created_at,
        persona=draft.persona,
        must_mention=list(draft.must_mention),
    )


def generate(chunks: Iterable[Chunk]) -> Iterator[Draft]:
    """Every rule-based draft the chunks support, in the chunks' order."""
    chunks = list(chunks)
    # A name defined in several files gets its module in the question, so the question has one right source.
    symbol_files = Counter(symbol for symbol, _ in {(c.symbol, c.path) for c in chunks if c.kind in CODE_KINDS})
    headings = Counter(_last_heading(c.symbol) for c in chunks if c.kind == "doc")
    for chunk in chunks:
        if chunk.kind in CODE_KINDS:
            yield from _code(chunk, ambiguous=symbol_files[chunk.symbol] > 1)
        elif chunk.kind == "module":
            yield from _module(chunk)
        elif chunk.kind == "doc":
            yield from _doc(chunk, ambiguous=headings[_last_heading(chunk.symbol)] > 1)
        elif chunk.kind == "commit":
            yield from _commit(chunk)
        elif chunk.kind == "diff":
            yield from _diff(chunk)
        elif chunk.kind == "issue":
            yield from _issue(chunk)
        elif chunk.kind == "pr":
            yield from _pr(chunk)


def _context(chunk: Chunk) -> str:
    return chunk.text[:MAX_CONTEXT_CHARS]


def _name(chunk: Chunk, ambiguous: bool) -> str:
    module = chunk.path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    return f"`{chunk.symbol}` in `{module}`" if ambiguous else f"`{chunk.symbol}`"


def _code(chunk: Chunk, ambiguous: bool) -> Iterator[Draft]:
    if "(continued, part" in chunk.text or not chunk.signature:
        return
    name = _name(chunk, ambiguous)
    short = chunk.symbol.rsplit(".", 1)[-1]
    summary = docstring_summary(chunk)
    if summary:
        yield Draft("code_purpose", f"What does {name} do?", summary, _context(chunk), chunk, (short,))
    if chunk.kind == "class":
        members = [m for m in dict.fromkeys(_MEMBER.findall(chunk.text)) if not m.startswith("_") or m == "__call__"]
        if len(members) >= 2:
            listed = ", ".join(members[:MAX_LIST])
            yield Draft(
                "class_members",
                f"Which public methods does class {name} define?",
                listed,
                _context(chunk),
                chunk,
                tuple(members[:3]),
            )
        return
    params = parameters(chunk.signature)
    if params is None:
        return
    names = [p for p, _ in params]
    if names:
        yield Draft(
            "code_arguments",
            f"Which arguments does {name} take?",
            ", ".join(names),
            _context(chunk),
            chunk,
            tuple(n.lstrip("*") for n in names[:5]),
        )
    defaults = [(p, d) for p, d in params if d is not None]
    # Informative defaults first; at most two per function so no single signature dominates the set.
    defaults.sort(key=lambda pd: pd[1] == "None")
    for param, default in defaults[:2]:
        yield Draft(
            "code_default",
            f"What is the default value of `{param}` in {name}?",
            f"`{param}` defaults to `{default}`.",
            _context(chunk),
            chunk,
            (param, default),
        )


def docstring_summary(chunk: Chunk) -> str:
    """The docstring's first paragraph, whitespace collapsed; '' when there is none worth asking about."""
    text = chunk.text
    at = text.find(chunk.signature)
    if at < 0:
        return ""
    match = _DOCSTRING.match(text, at + len(chunk.signature))
    if not match:
        return ""
    first = match.group(2).strip().split("\n\n")[0]
    summary = " ".join(first.split())
    if not 20 <= len(summary) <= 500 or len(summary.split()) < 4 or _SKIP_SUMMARY.match(summary):
        return ""
    return summary


def parameters(signature: str) -> list[tuple[str, str | None]] | None:
    """(name, default as written or None) of a def's parameters, without self/cls; None if it does not parse."""
    source = signature.strip()
    if not source.startswith(("def ", "async def ")):
        return None
    try:
        tree = ast.parse(source + "\n    pass")
    except SyntaxError:
        return None
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
    args = fn.args
    positional = args.posonlyargs + args.args
    pos_defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out: list[tuple[str, str | None]] = []
    for arg, default in zip(positional, pos_defaults, strict=True):
        out.append((arg.arg, _segment(source, default)))
    if args.vararg:
        out.append(("*" + args.vararg.arg, None))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append((arg.arg, _segment(source, default)))
    if args.kwarg:
        out.append(("**" + args.kwarg.arg, None))
    return [(n, d) for n, d in out if n not in ("self", "cls")]


def _segment(source: str, node: ast.expr | None) -> str | None:
    if node is None:
        return None
    text = ast.get_source_segment(source + "\n    pass", node)
    return " ".join(text.split()) if text else None


def _module(chunk: Chunk) -> Iterator[Draft]:
    defines = re.search(r"^Defines: (.+)$", chunk.text, re.M)
    if not defines:
        return
    names = [n.strip() for n in defines.group(1).split(",") if n.strip() and not n.strip().startswith("_")]
    if len(names) < 2:
        return
    yield Draft(
        "module_contents",
        f"What does module `{chunk.symbol}` define?",
        ", ".join(names[:MAX_LIST]),
        _context(chunk),
        chunk,
        tuple(names[:3]),
    )


def _last_heading(heading: str) -> str:
    return heading.split(" > ")[-1].strip()


def _doc(chunk: Chunk, ambiguous: bool) -> Iterator[Draft]:
    if not chunk.symbol or "\n(continued)\n" in chunk.text[:300]:
        return
    topic = chunk.symbol if ambiguous else _last_heading(chunk.symbol)
    paragraph = ""
    in_fence = False
    for block in re.split(r"\n\s*\n", chunk.text):
        stripped = block.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = stripped.count("```") % 2 == 1 or in_fence
            continue
        if in_fence or not stripped or stripped.startswith(("#", "<", "|", "[[", "!", "-->")):
            continue
        paragraph = " ".join(stripped.split())
        break
    if len(paragraph) < 40:
        return
    yield Draft(
        "docs_section",
        f"What does the documentation say about {topic}?",
        paragraph[:600],
        _context(chunk),
        chunk,
        persona="user",
    )


def commit_message(text: str) -> str:
    """The message of a commit chunk (between the header and the file list)."""
    parts = text.split("\n\n", 1)
    if len(parts) < 2:
        return ""
    message = re.split(r"\n\n(?:Files changed \(|No file changes\.)", parts[1], maxsplit=1)[0]
    return message.strip()


def _commit(chunk: Chunk) -> Iterator[Draft]:
    if "\nMerge of " in chunk.text or not chunk.commit:
        return
    message = commit_message(chunk.text)
    files = re.findall(r"^  [AMDRTC] (?:\S+ -> )?(\S+) (?:\+\d+ -\d+|binary)$", chunk.text, re.M)
    if not message or not files:
        return
    paragraphs = [" ".join(p.split()) for p in message.split("\n\n") if p.strip()]
    answer = " ".join(paragraphs[:2])[:600]
    yield Draft(
        "commit_why",
        f"Why was `{files[0]}` changed in commit {chunk.commit[:7]}?",
        answer,
        _context(chunk),
        chunk,
        (chunk.commit[:7],),
    )


def _diff(chunk: Chunk) -> Iterator[Draft]:
    head = chunk.text.split("\n", 1)[0]
    match = re.match(r"diff of (\S+) @ ([0-9a-f]+), [0-9-]+: (.+)$", head)
    if not match or not chunk.commit:
        return
    path, _, subject = match.groups()
    yield Draft(
        "commit_file_change",
        f"What changed in `{path}` in commit {chunk.commit[:7]}?",
        subject.strip(),
        _context(chunk),
        chunk,
        (chunk.commit[:7],),
    )


def _entries(text: str) -> list[tuple[str, str]]:
    """(header, body) of each `@author wrote/commented on date:` entry of an issue or PR chunk."""
    out = []
    for match in re.finditer(
        r"^@(\S+) ([^\n]*?) on (\d{4}-\d{2}-\d{2}):?\n?(.*?)(?=\n\n@\S+ [^\n]* on \d{4}|\Z)", text, re.M | re.S
    ):
        out.append((f"@{match.group(1)} {match.group(2)}", match.group(4).strip()))
    return out


def _first_paragraph(text: str) -> str:
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block) >= 20 and not block.startswith(("```", "<!--", "#", "|")):
            return block[:600]
    return ""


def _issue(chunk: Chunk) -> Iterator[Draft]:
    lines = chunk.text.split("\n")
    title_match = re.match(r"Issue #(\d+): (.+)$", lines[0])
    if not title_match or len(lines) < 2 or not lines[1].startswith("state: closed") or chunk.issue is None:
        return
    title = title_match.group(2).strip()
    entries = _entries(chunk.text)
    if len(entries) < 2:
        return
    resolution = _first_paragraph(entries[-1][1])
    if not resolution:
        return
    question = title if title.endswith("?") else f'How was issue #{chunk.issue} "{title}" resolved?'
    yield Draft("issue_resolution", question, resolution, _context(chunk), chunk, persona="user")


def _pr(chunk: Chunk) -> Iterator[Draft]:
    lines = chunk.text.split("\n")
    title_match = re.match(r"PR #(\d+): (.+)$", lines[0])
    if not title_match or chunk.pr is None or "merged on" not in chunk.text[:400]:
        return
    entries = _entries(chunk.text)
    body = _first_paragraph(entries[0][1]) if entries else ""
    if not body:
        return
    title = title_match.group(2).strip()
    yield Draft(
        "pr_change", f'What does PR #{chunk.pr} "{title}" change?', body, _context(chunk), chunk, (f"#{chunk.pr}",)
    )
