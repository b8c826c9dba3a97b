"""What an answer can lead with, read out of a retrieved chunk: usage examples, argument lines, raises, reasons.

The extractive answerer picks what the question asks for: "how do I" wants a usage example that calls the API,
"which default" the argument's documented line with its default quoted literally, "why" the sentence that explains,
and an error message the `raise` with the condition above it. Everything here reads the chunk's own text; nothing is
invented except `usage_from_argument`, which writes a call from a documented argument and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ml.types import Chunk

# Question intents, tested in this order: a quoted message or an exception name is an error question even when it
# starts with "why"; "how do I ... by default" is a default question.
_ERROR = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b|\braises?\b|\berror\b|\bfails?\b|\brefuses?\b", re.I)
# A quote opens after no letter and closes before none: the apostrophes of "don't ... checkpoint's" quote nothing.
_QUOTED = re.compile(r"(?<!\w)[\"“']([^\"”']{15,})[\"”'](?!\w)")
_DEFAULT = re.compile(
    r"\bdefaults?\b|\bby default\b|out of the box|\bwhich (argument|option|parameter|setting|flag|value)s?\b|"
    r"\bwhat (argument|option|parameter|setting|flag|value)s?\b|\bcontrols?\b|\b(don't|do not|never|without) "
    r"(set|pass|specify|specifying|choose|choosing|give|giving|setting|passing)\b|\bisn't set\b|\bis not set\b",
    re.I,
)
_WHY = re.compile(r"^\s*why\b|\bwhy (do|does|is|are|did|would)\b|\bwhen does\b|\bwhen do\b", re.I)
# "What settings do I need to ..." asks how to configure something (a usage example), not what a default is.
_SETUP = re.compile(r"\bwhat (settings|options|arguments|parameters) (do|should|would|must) (i|we|you)\b", re.I)
_HOWTO = re.compile(r"\bhow (do|can|should|would) (i|we|you|one)\b|\bhow to\b|\bwhat settings\b|\bcan i\b", re.I)

# Words that mark a sentence or comment as an explanation.
EXPLAINS = re.compile(
    r"\b(because|so that|to avoid|to prevent|otherwise|since|in order to|which means|this is why|instead of|"
    r"as long as|unless|when|if)\b",
    re.I,
)
# Accessors carry no answer: `return self._x` and the matching setter.
_ACCESSOR_BODY = re.compile(r"^\s*(return self\._?\w+|self\._\w+ = \w+)\s*$")
_ARG_LINE = re.compile(r"^\**([A-Za-z_]\w*)\**\s*\((.*)\)\s*:\s*(.*)$")
_ARG_COLON = re.compile(r"^([A-Za-z_]\w*)\s*:\s+(.+)$")
_FIELD = re.compile(r"^([A-Za-z_]\w*)\s*:\s*([^=]+?)\s*=\s*(.+)$")
_DEFAULTS_TO = re.compile(r"defaults? to\s*(`[^`]+`|[^\s),]+)", re.I)


def quoted(question: str) -> str:
    """The message a question quotes ("I get 'Asking to pad but ...'"), or "" when it quotes none."""
    match = _QUOTED.search(question)
    return match.group(1).strip() if match else ""


def intent(question: str) -> str:
    """`error`, `default`, `why`, `howto` or `other` for a question."""
    if _QUOTED.search(question) or _ERROR.search(question):
        return "error"
    if _SETUP.search(question):
        return "howto"
    if _DEFAULT.search(question):
        return "default"
    if _WHY.search(question):
        return "why"
    if _HOWTO.search(question):
        return "howto"
    return "other"


def is_accessor(c: Chunk) -> bool:
    """A property getter or setter (`return self._x`): a poor answer to anything, never the lead."""
    if c.kind not in ("method", "function"):
        return False
    lines = [ln for ln in c.text.splitlines() if ln.strip()]
    decorated = any(ln.strip() == "@property" or re.match(r"\s*@\w+\.setter\b", ln) for ln in lines)
    body = [ln for ln in lines if not ln.strip().startswith(("@", "def ", '"""', "'''", "#"))]
    if len(body) == 1 and _ACCESSOR_BODY.match(body[0]):
        return True
    return decorated and len(body) <= 6 and any(_ACCESSOR_BODY.match(ln) for ln in body)


@dataclass(frozen=True)
class Example:
    """A usage example's code lines (prompts `>>>`/`...` removed), in order."""

    lines: tuple[str, ...]


def examples(c: Chunk) -> list[Example]:
    """Usage examples of a chunk: an `example` chunk's code, or the `>>>` sessions and code fences in its text."""
    text_lines = c.text.splitlines()
    if c.kind == "example":
        body = text_lines[1:] if text_lines and text_lines[0].endswith("usage example") else text_lines
        code = tuple(ln.rstrip() for ln in body if ln.strip())
        return [Example(code)] if code else []
    out: list[Example] = []
    i = 0
    while i < len(text_lines):
        stripped = text_lines[i].strip()
        if stripped.startswith("```") and stripped[3:].strip() in ("", "python", "py", "pycon"):
            j = i + 1
            block = []
            while j < len(text_lines) and not text_lines[j].strip().startswith("```"):
                block.append(re.sub(r"^(>>>|\.\.\.) ?", "", text_lines[j].strip()))
                j += 1
            code = tuple(b for b in block if b.strip())
            if code:
                out.append(Example(code))
            i = j + 1
        elif stripped.startswith(">>>"):
            block = []
            while i < len(text_lines) and text_lines[i].strip().startswith((">>>", "...")):
                block.append(re.sub(r"^(>>>|\.\.\.) ?", "", text_lines[i].strip()))
                i += 1
            code = tuple(b for b in block if b.strip())
            if code:
                out.append(Example(code))
        else:
            i += 1
    return out


@dataclass(frozen=True)
class Argument:
    """One documented argument: its name, its head line (with the default as written) and its description."""

    name: str
    head: str
    description: str
    default: str = ""


def arguments(c: Chunk) -> list[Argument]:
    """Arguments a chunk documents: Args entries, dataclass fields with `field(default=..., help=...)`, and
    parameters with a default in the signature."""
    lines = c.text.splitlines()
    if c.kind == "argument" and lines and " argument `" in lines[0]:
        lines = lines[1:]
    out: list[Argument] = []
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        indent = len(lines[i]) - len(lines[i].lstrip())
        match = _ARG_LINE.match(stripped)
        field_match = _FIELD.match(stripped) if "field(" in stripped or c.kind == "argument" else None
        if match and "`" in match.group(2) or (match and c.kind == "argument"):
            desc, j = _description(lines, i, indent, match.group(3))
            name = match.group(1)
            default = _DEFAULTS_TO.search(stripped)
            if name not in seen:
                seen.add(name)
                out.append(Argument(name, stripped, desc, default.group(1) if default else ""))
            i = j
            continue
        if field_match and "field(" in stripped:
            block = " ".join(ln.strip() for ln in lines[i : i + 8])
            block = block.split(")", 1)[0] if block.count("(") <= 1 else block
            default = re.search(r"default(?:_factory)?\s*=\s*([^,]+?)\s*(,|\))", block)
            helptext = re.search(r"[\"']help[\"']\s*:\s*\(?\s*[\"'](.+?)[\"']\s*(\)|\}|,\s*[\"']\w+[\"']\s*:)", block)
            name = field_match.group(1)
            if name not in seen:
                seen.add(name)
                value = default.group(1) if default else ""
                head = f"{name}: {field_match.group(2).strip()} = {value}" if value else stripped[:160]
                out.append(Argument(name, head, helptext.group(1) if helptext else "", value))
        i += 1
    for name, value in _signature_defaults(c):
        if name not in seen:
            seen.add(name)
            out.append(Argument(name, f"{name}={value}", "", value))
    return out


def _description(lines: list[str], i: int, indent: int, rest: str) -> tuple[str, int]:
    parts = [rest] if rest else []
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if not line.strip():
            j += 1
            continue
        if len(line) - len(line.lstrip()) <= indent and not (indent == 0 and not _ARG_LINE.match(line.strip())):
            break
        if indent == 0 and _ARG_LINE.match(line.strip()):
            break
        parts.append(line.strip())
        j += 1
    return " ".join(" ".join(parts).split()), j


def _signature_defaults(c: Chunk) -> list[tuple[str, str]]:
    """`name=value` parameters of the chunk's own `def` (from its signature, or its text's first `def`)."""
    if c.kind not in ("function", "method") and not (c.kind == "argument" and c.signature.lstrip().startswith("def")):
        return []
    sig = c.signature or ""
    if not sig:
        match = re.search(r"^\s*(async\s+)?def\s.*?\)\s*(->[^:]+)?:", c.text, re.S | re.M)
        sig = match.group(0) if match else ""
    params = sig.split("(", 1)[1] if "(" in sig else ""
    out = []
    for m in re.finditer(
        r"(?:^|,|\()\s*\**([A-Za-z_]\w*)\s*(?::\s*[^=,()\[\]]+(?:\[[^\]]*\])?)?\s*=\s*([^,()]+)", params
    ):
        out.append((m.group(1), m.group(2).strip()))
    return out


def usage_from_argument(c: Chunk, arg: Argument) -> str:
    """A call that sets a documented argument: `Owner(arg=True)` for a flag, wrapped in `from_pretrained` for a
    quantization config (how the library takes one). Empty when the argument is not a flag of a class."""
    owner = c.symbol.split(".")[0] if c.symbol else ""
    head = arg.head.lower()
    is_flag = "bool" in head and ("false" in arg.default.lower() or "false" in head)
    if not owner or not owner[:1].isupper() or not is_flag:
        return ""
    call = f"{owner}({arg.name}=True)"
    declared = f"{c.signature} {c.text[:400]}"
    if re.search(r"QuantizationConfig|quantization_config", declared):
        return f"model = AutoModel.from_pretrained(model_id, quantization_config={call})"
    return call


@dataclass(frozen=True)
class Raise:
    """A `raise` with the condition that guards it and the message lines that follow."""

    lines: tuple[str, ...]


def raises(c: Chunk) -> list[Raise]:
    """Each `raise X(...)` of the chunk with the nearest enclosing `if`/`elif` above it and up to 3 message lines."""
    lines = c.text.splitlines()
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("raise "):
            continue
        indent = len(line) - len(line.lstrip())
        cond = ""
        for j in range(i - 1, max(-1, i - 12), -1):
            above = lines[j]
            a_indent = len(above) - len(above.lstrip())
            if above.strip() and a_indent < indent:
                if above.strip().startswith(("if ", "elif ", "else", "except", "for ", "while ", "with ")):
                    cond = above.strip()
                break
        message = []
        depth = stripped.count("(") - stripped.count(")")
        k = i + 1
        while depth > 0 and k < len(lines) and len(message) < 4:
            message.append(lines[k].strip())
            depth += lines[k].count("(") - lines[k].count(")")
            k += 1
        out.append(Raise(tuple(x for x in (cond, stripped, *message) if x and x != ")")))
    return out
