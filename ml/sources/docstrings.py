"""Units inside a docstring that answer questions on their own: one argument's entry, one usage example.

"Which default does X use?" is answered by one line of an Args section, and "how do I ..." by an example; as
parts of a 300-line class chunk neither is found by BM25 (length normalisation) nor by a 64-token embedding. Each
unit keeps the exact file lines it comes from, so its citation points at them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

SECTION = re.compile(r"^(Args|Arguments|Parameters|Attributes|Keyword Args|Keyword Arguments)\s*:\s*$")
ENTRY = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\(|:)")
FENCE = re.compile(r"^```(\w*)\s*$")
# Examples shorter than this say nothing on their own (`>>> model.eval()`); longer ones are cut to this many lines.
MIN_EXAMPLE_LINES = 2
MAX_EXAMPLE_LINES = 30
MAX_ARGUMENT_LINES = 25


@dataclass(frozen=True)
class DocUnit:
    """An argument entry or a usage example, with its 1-based inclusive lines in the file."""

    kind: str  # "argument" or "example"
    name: str  # the argument's name; "" for an example
    start_line: int
    end_line: int
    text: str


def docstring_units(node: ast.AST, lines: list[str]) -> list[DocUnit]:
    """Argument entries and usage examples of `node`'s docstring, plus dataclass fields with a help text."""
    units: list[DocUnit] = []
    body = getattr(node, "body", [])
    doc = body[0] if body and isinstance(body[0], ast.Expr) else None
    if doc is not None and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
        first, last = doc.lineno, doc.end_lineno or doc.lineno
        units.extend(_arguments(lines, first, last))
        units.extend(_examples(lines, first, last))
    if isinstance(node, ast.ClassDef):
        units.extend(_help_fields(node, lines))
    return units


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _arguments(lines: list[str], first: int, last: int) -> list[DocUnit]:
    out: list[DocUnit] = []
    n = first
    while n <= last:
        line = lines[n - 1]
        if not SECTION.match(line.strip().strip('"').strip()):
            n += 1
            continue
        base = _indent(line)
        n += 1
        entry_indent: int | None = None
        current: tuple[str, int] | None = None
        end = n - 1
        while n <= last:
            text = lines[n - 1]
            stripped = text.strip().strip('"').strip()
            if not stripped:
                n += 1
                continue
            indent = _indent(text)
            if indent <= base:
                break  # the next section (Returns:, Example:) or the docstring's end
            if entry_indent is None:
                entry_indent = indent
            match = ENTRY.match(stripped) if indent == entry_indent else None
            if match:
                if current:
                    out.append(_argument(lines, current, end))
                current = (match.group(1), n)
            end = n
            n += 1
        if current:
            out.append(_argument(lines, current, end))
    return out


def _argument(lines: list[str], current: tuple[str, int], end: int) -> DocUnit:
    name, start = current
    end = min(end, start + MAX_ARGUMENT_LINES - 1)
    body = [line.strip() for line in lines[start - 1 : end]]
    return DocUnit("argument", name, start, end, "\n".join(body))


def _examples(lines: list[str], first: int, last: int) -> list[DocUnit]:
    """`>>>` sessions and fenced code blocks of the docstring."""
    out: list[DocUnit] = []
    n = first
    while n <= last:
        stripped = lines[n - 1].strip()
        fence = FENCE.match(stripped)
        if fence and fence.group(1) in ("", "python", "py", "pycon"):
            start = n + 1
            end = start
            while end <= last and not lines[end - 1].strip().startswith("```"):
                end += 1
            out.extend(_example(lines, start, end - 1))
            n = end + 1
        elif stripped.startswith(">>>"):
            start = end = n
            while end + 1 <= last and lines[end].strip().startswith((">>>", "...")):
                end += 1
            out.extend(_example(lines, start, end))
            n = end + 1
        else:
            n += 1
    return out


def _example(lines: list[str], start: int, end: int) -> list[DocUnit]:
    code = [re.sub(r"^(>>>|\.\.\.) ?", "", line.strip()) for line in lines[start - 1 : end]]
    if sum(1 for c in code if c.strip()) < MIN_EXAMPLE_LINES:
        return []
    end = min(end, start + MAX_EXAMPLE_LINES - 1)
    text = "\n".join(c for c in code[: end - start + 1] if c.strip())
    return [DocUnit("example", "", start, end, text)]


def _help_fields(node: ast.ClassDef, lines: list[str]) -> list[DocUnit]:
    """Dataclass fields documented by `field(..., metadata={"help": ...})`, as `TrainingArguments` writes them."""
    out = []
    for child in node.body:
        if not (isinstance(child, ast.AnnAssign) and isinstance(child.target, ast.Name)):
            continue
        value = child.value
        if not (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field"):
            continue
        if not any(k.arg == "metadata" for k in value.keywords):
            continue
        start, end = child.lineno, min(child.end_lineno or child.lineno, child.lineno + MAX_ARGUMENT_LINES - 1)
        text = "\n".join(line.strip() for line in lines[start - 1 : end])
        out.append(DocUnit("argument", child.target.id, start, end, text))
    return out
