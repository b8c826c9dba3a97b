"""Python and Markdown chunking: symbols, exact line ranges, long bodies, unparsable files."""

from __future__ import annotations

import textwrap

from ml.sources.docs import chunk_markdown
from ml.sources.python_code import MAX_LINES, chunk_python, join_parts, module_name

SOURCE = textwrap.dedent(
    '''\
    """Tools for greeting."""
    import os

    GREETING = "hi"


    class Greeter(Base):
        """Greets people politely."""

        style = "formal"

        def greet(self, name: str = "you") -> str:
            """Return a greeting for `name`."""
            return f"{GREETING} {name}"

        @property
        def loud(self):
            return True

        class Inner:
            def deep(self):
                return 1


    def helper(x):
        def nested():
            return x

        return nested()
    '''
)


def test_every_symbol_gets_a_chunk_with_its_exact_lines() -> None:
    pieces = chunk_python(SOURCE, "pkg.greet")
    lines = SOURCE.splitlines()
    by_symbol = {p.symbol: p for p in pieces}
    assert set(by_symbol) == {
        "pkg.greet",
        "Greeter",
        "Greeter.greet",
        "Greeter.loud",
        "Greeter.Inner",
        "Greeter.Inner.deep",
        "helper",
    }
    assert by_symbol["Greeter.greet"].kind == "method"
    assert by_symbol["helper"].kind == "function"
    assert by_symbol["Greeter"].kind == "class"
    for symbol in ("Greeter.greet", "helper"):
        piece = by_symbol[symbol]
        assert piece.text == "\n".join(lines[piece.start_line - 1 : piece.end_line])
    # A decorated method starts at its decorator.
    assert lines[by_symbol["Greeter.loud"].start_line - 1].strip() == "@property"


def test_class_chunk_is_signature_docstring_and_members() -> None:
    cls = next(p for p in chunk_python(SOURCE, "m") if p.symbol == "Greeter")
    assert cls.text.startswith("class Greeter(Base):")
    assert "Greets people politely." in cls.text
    assert 'def greet(self, name: str = "you") -> str:  # Return a greeting for `name`.' in cls.text
    assert 'style = "formal"' in cls.text
    assert "return f" not in cls.text  # bodies live in the method chunks


def test_long_function_is_split_with_overlap_and_keeps_symbol() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(200))
    source = f"def long_one():\n{body}\n    return x0\n"
    parts = [p for p in chunk_python(source, "m") if p.symbol == "long_one"]
    assert len(parts) > 1
    assert parts[0].start_line == 1 and parts[-1].end_line == 202
    for a, b in zip(parts, parts[1:], strict=False):
        assert b.start_line <= a.end_line  # overlap: no line falls between two parts
    assert all(p.end_line - p.start_line + 1 <= MAX_LINES for p in parts)
    assert parts[1].text.startswith("def long_one():")  # later parts carry the signature for context


def test_split_function_parts_join_back_into_its_exact_lines() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(200))
    source = f"def long_one(\n    a,\n    b,\n):\n{body}\n    return x0\n"
    parts = [(p.start_line, p.end_line, p.text) for p in chunk_python(source, "m") if p.symbol == "long_one"]
    assert len(parts) > 2
    start, end, text = join_parts(list(reversed(parts)))  # type: ignore[misc]
    assert (start, end) == (1, 205)
    assert text == "\n".join(source.splitlines()[:205])
    # A missing middle part leaves a gap: nothing is quoted rather than a function with lines silently dropped.
    assert join_parts([parts[0], parts[-1]]) is None
    assert join_parts([]) is None


def test_unparsable_python_becomes_text_windows_not_dropped() -> None:
    source = "def broken(:\n    pass\n" + "\n".join(f"line {i}" for i in range(150))
    pieces = chunk_python(source, "m")
    assert pieces and all(p.kind == "text" for p in pieces)
    assert pieces[0].start_line == 1 and pieces[-1].end_line == len(source.splitlines())


def test_module_name_from_path() -> None:
    assert module_name("transformers/models/bert/modeling_bert.py") == "transformers.models.bert.modeling_bert"
    assert module_name("transformers/__init__.py") == "transformers"


def test_markdown_is_chunked_by_heading_with_heading_path() -> None:
    doc = "# Quantization\nIntro.\n\n## bitsandbytes\nLoad in 4-bit.\n```python\n# not a heading\n```\n## GPTQ\nText.\n"
    pieces = chunk_markdown(doc)
    assert [p.symbol for p in pieces] == ["Quantization", "Quantization > bitsandbytes", "Quantization > GPTQ"]
    assert pieces[1].start_line == 4 and pieces[1].end_line == 8
    assert "# not a heading" in pieces[1].text


def test_a_class_body_is_its_outline_with_each_methods_code_in_place_of_its_signature() -> None:
    from ml.sources.python_code import class_body

    pieces = {p.symbol: p for p in chunk_python(SOURCE, "pkg.greet")}
    outline = pieces["Greeter"].text
    assert "    def greet(self" in outline  # the outline names each method by its signature only
    methods = [(p.start_line, p.end_line, p.text) for p in (pieces["Greeter.loud"], pieces["Greeter.greet"])]
    body = class_body(outline, methods)
    assert '"""Greets people politely."""' in body and 'style = "formal"' in body
    assert 'return f"{GREETING} {name}"' in body and "return True" in body
    assert body.count("def greet(") == 1  # the member line gave way to the method's own code
    assert body.index("def greet(") < body.index("def loud(")  # file order, whatever order they came in
