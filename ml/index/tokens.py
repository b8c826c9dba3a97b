"""Identifier splitting for BM25: `AutoModelForCausalLM` also matches `auto model for causal lm`."""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def split_identifier(name: str) -> list[str]:
    """Lower-cased parts of a snake_case or CamelCase identifier: `from_pretrained` -> [from, pretrained]."""
    parts: list[str] = []
    for piece in name.split("_"):
        parts.extend(p.lower() for p in CAMEL.findall(piece))
    return parts


def expand_identifiers(text: str) -> str:
    """The parts of every compound identifier in `text`, space separated (single words are left to the raw field)."""
    out: list[str] = []
    for ident in IDENTIFIER.findall(text):
        parts = split_identifier(ident)
        if len(parts) > 1:
            out.extend(parts)
    return " ".join(out)


def search_text(symbol: str, path: str, text: str) -> str:
    """The BM25 field: symbol and path words, then the split identifiers of the text."""
    path_words = " ".join(split_identifier(re.sub(r"\.(py|md|mdx)$", "", path).replace("/", "_")))
    return f"{' '.join(split_identifier(symbol.replace('.', '_')))} {path_words} {expand_identifiers(text)}"
