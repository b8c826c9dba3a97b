"""Chunks Markdown and MDX documentation by heading, keeping each section's exact line range."""

from __future__ import annotations

import re

from ml.sources.python_code import Piece, _windows

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
MAX_SECTION_LINES = 60


def chunk_markdown(text: str) -> list[Piece]:
    """One piece per section (heading plus body); long sections split with overlap, each keeping its heading path."""
    lines = text.splitlines()
    sections: list[tuple[int, int, str]] = []  # (start, end, heading path)
    stack: list[tuple[int, str]] = []
    start, in_fence = 1, False
    current = ""
    for i, line in enumerate(lines, 1):
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            if i > start:
                sections.append((start, i - 1, current))
            level, title = len(match.group(1)), _clean(match.group(2))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            current = " > ".join(t for _, t in stack)
            start = i
    if lines:
        sections.append((start, len(lines), current))

    pieces: list[Piece] = []
    for s, e, heading in sections:
        body = "\n".join(lines[s - 1 : e])
        if not body.strip():
            continue
        for part, (ws, we) in enumerate(_windows(s, e, MAX_SECTION_LINES, 8)):
            window = "\n".join(lines[ws - 1 : we])
            text_out = window if part == 0 else f"{heading}\n(continued)\n{window}"
            pieces.append(Piece("doc", heading, ws, we, text_out, part=part))
    return pieces


def _clean(title: str) -> str:
    """Drop MDX anchors and markup from a heading: `[[autodoc]] X` and `<a id=...>` are common in Transformers docs."""
    title = re.sub(r"<[^>]+>", "", title)
    title = re.sub(r"\[\[([^\]]+)\]\]", r"\1", title)
    return title.strip(" `*")
