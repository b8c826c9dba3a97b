"""Chunks Python source with the `ast` module: modules, classes, functions and methods with exact line ranges."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ml.sources.docstrings import docstring_units

# A function longer than this is split into overlapping windows that keep its symbol and exact lines.
MAX_LINES = 80
WINDOW = 60
OVERLAP = 12
TEXT_WINDOW = 60


@dataclass(frozen=True)
class Piece:
    """A chunk before ids and URLs are attached."""

    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    parent_symbol: str = ""
    signature: str = ""
    part: int = 0


def _windows(start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Inclusive line windows covering [start, end] with the given overlap."""
    if end - start + 1 <= size:
        return [(start, end)]
    spans = []
    step = size - overlap
    s = start
    while True:
        e = min(s + size - 1, end)
        spans.append((s, e))
        if e >= end:
            return spans
        s += step


def text_windows(lines: list[str], kind: str = "text", symbol: str = "") -> list[Piece]:
    """Plain-text windows for a file that cannot be parsed: nothing is dropped."""
    if not lines:
        return []
    return [
        Piece(kind, symbol, s, e, "\n".join(lines[s - 1 : e]), part=i)
        for i, (s, e) in enumerate(_windows(1, len(lines), TEXT_WINDOW, OVERLAP // 2))
        if "".join(lines[s - 1 : e]).strip()
    ]


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: list[str]) -> str:
    """The definition line(s) up to the colon, as written."""
    body_start = node.body[0].lineno if node.body else node.lineno
    # A one-line body sits on the def line: keep the def only.
    end = max(node.lineno, body_start - 1)
    header = "\n".join(line.rstrip() for line in lines[node.lineno - 1 : end])
    if isinstance(node.body[0], ast.Expr) and node.body[0].lineno == node.lineno:
        header = lines[node.lineno - 1].rstrip()
    return header.strip()


def _start(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([d.lineno for d in decorators] + [node.lineno])  # type: ignore[attr-defined]


def _first_line(doc: str | None) -> str:
    return doc.strip().split("\n\n")[0].strip() if doc else ""


def chunk_python(source: str, module: str) -> list[Piece]:
    """Split one Python file into pieces; an unparsable file becomes text windows.

    Args:
        source: The file's text.
        module: Dotted module name (used as the module chunk's symbol).

    An unparsable file is returned as `text` pieces, which callers count as a fallback.
    """
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return text_windows(lines, symbol=module)

    pieces: list[Piece] = []
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    header_end = (_start(defs[0]) - 1) if defs else len(lines)
    top_names = [n.name for n in defs]
    doc = ast.get_docstring(tree) or ""
    if header_end >= 1 or doc:
        header_end = max(header_end, 1)
        summary = f"Defines: {', '.join(top_names)}" if top_names else ""
        for i, (s, e) in enumerate(_windows(1, min(header_end, len(lines)), WINDOW, OVERLAP)):
            body = "\n".join(lines[s - 1 : e])
            if i == 0:
                body = _strip_license(body)
            text = "\n".join(x for x in (f"module {module}", body, summary if i == 0 else "") if x)
            if body.strip() or summary:
                pieces.append(Piece("module", module, s, e, text, part=i))

    def visit(nodes: list[ast.stmt], parent: str) -> None:
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                _class(node, parent)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                _function(node, parent)

    def _class(node: ast.ClassDef, parent: str) -> None:
        qual = f"{parent}.{node.name}" if parent else node.name
        start, end = _start(node), node.end_lineno or node.lineno
        sig = _signature(node, lines)
        members = []
        for child in node.body:
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                summary = _first_line(ast.get_docstring(child))[:100]
                member = f"    {_signature(child, lines).splitlines()[0].strip()}"
                members.append(f"{member}  # {summary}" if summary else member)
            elif isinstance(child, ast.ClassDef):
                members.append(f"    class {child.name}")
            elif isinstance(child, ast.Assign | ast.AnnAssign) and child.lineno == (child.end_lineno or child.lineno):
                members.append("    " + lines[child.lineno - 1].strip())
        decorators = "\n".join(lines[i - 1].rstrip() for i in range(start, node.lineno))
        text = "\n".join(x for x in (decorators, sig, _indent_doc(ast.get_docstring(node)), "\n".join(members)) if x)
        pieces.append(Piece("class", qual, start, end, text, parent_symbol=parent, signature=sig))
        _units(node, qual, parent, sig)
        visit(node.body, qual)

    def _function(node: ast.FunctionDef | ast.AsyncFunctionDef, parent: str) -> None:
        qual = f"{parent}.{node.name}" if parent else node.name
        kind = "method" if parent and _is_class_symbol(parent) else "function"
        start, end = _start(node), node.end_lineno or node.lineno
        sig = _signature(node, lines)
        spans = _windows(start, end, MAX_LINES, OVERLAP) if end - start + 1 > MAX_LINES else [(start, end)]
        if len(spans) > 1:
            spans = _windows(start, end, WINDOW, OVERLAP)
        for i, (s, e) in enumerate(spans):
            body = "\n".join(lines[s - 1 : e])
            if i > 0:
                body = f"{sig}\n    ... (continued, part {i + 1} of {len(spans)})\n{body}"
            pieces.append(Piece(kind, qual, s, e, body, parent_symbol=parent, signature=sig, part=i))
        _units(node, qual, parent, sig)

    def _units(node: ast.AST, qual: str, parent: str, sig: str) -> None:
        """Argument entries and usage examples as chunks of their own, under the symbol they document."""
        for unit in docstring_units(node, lines):
            head = f"{qual} argument `{unit.name}`" if unit.kind == "argument" else f"{qual} usage example"
            text = f"{head}\n{unit.text}"
            pieces.append(Piece(unit.kind, qual, unit.start_line, unit.end_line, text, parent, sig))

    class_symbols = _qualnames_of_classes(tree)

    def _is_class_symbol(symbol: str) -> bool:
        return symbol in class_symbols

    visit(tree.body, "")
    return pieces


def join_parts(parts: list[tuple[int, int, str]]) -> tuple[int, int, str] | None:
    """The whole function from its stored parts `(start_line, end_line, text)` (any order, overlaps allowed): each
    part's last `end - start + 1` lines are its file lines, after the signature a later part repeats. None when the
    parts leave a gap (one is missing), so a caller never quotes a function with lines silently dropped."""
    if not parts:
        return None
    by_line: dict[int, str] = {}
    for start, end, text in parts:
        lines = text.splitlines()
        count = end - start + 1
        if count <= 0 or len(lines) < count:
            return None
        for offset, line in enumerate(lines[len(lines) - count :]):
            by_line.setdefault(start + offset, line)
    first, last = min(by_line), max(by_line)
    if len(by_line) != last - first + 1:
        return None
    return first, last, "\n".join(by_line[n] for n in range(first, last + 1))


def class_body(outline: str, methods: list[tuple[int, int, str]]) -> str:
    """A class's code for an answer to quote from: its outline chunk (signature, docstring, attributes) with each
    method's whole code (`(start_line, end_line, text)`, in file order) in place of the outline's one-line member
    signatures. A method whose parts leave a gap is left out, never quoted with lines dropped."""
    member = re.compile(r"^    (async\s+)?def\s")
    in_doc = False
    head = []
    for line in outline.splitlines():
        if line.count('"""') % 2 == 1:
            in_doc = not in_doc
        if in_doc or not member.match(line):
            head.append(line)
    return "\n\n".join(["\n".join(head), *(text for _, _, text in sorted(methods))])


LICENSE_WORDS = ("copyright", "license", "licensed")


def _strip_license(text: str) -> str:
    """Drop a leading comment block that is a copyright or license notice: it matches every question badly."""
    lines = text.splitlines()
    end = 0
    while end < len(lines) and (lines[end].startswith("#") or not lines[end].strip()):
        end += 1
    block = "\n".join(lines[:end]).lower()
    return "\n".join(lines[end:]) if any(w in block for w in LICENSE_WORDS) else text


def _indent_doc(doc: str | None) -> str:
    if not doc:
        return ""
    return "\n".join("    " + line if line else "" for line in ('"""' + doc.strip() + '"""').splitlines())


def _qualnames_of_classes(tree: ast.Module) -> set[str]:
    names: set[str] = set()

    def walk(nodes: list[ast.stmt], parent: str) -> None:
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                qual = f"{parent}.{node.name}" if parent else node.name
                names.add(qual)
                walk(node.body, qual)

    walk(tree.body, "")
    return names


def module_name(rel_path: str) -> str:
    """`transformers/models/llama/modeling_llama.py` -> `transformers.models.llama.modeling_llama`."""
    name = rel_path[:-3] if rel_path.endswith(".py") else rel_path
    name = name.replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name
