"""Argument entries and usage examples become chunks of their own, citing exactly their lines."""

from __future__ import annotations

from ml.sources.corpus import chunk_file
from tests.support.corpus import transformers_root


def chunks_of(rel: str):
    from ml.sources.corpus import Corpus

    root = transformers_root()
    corpus = Corpus(name="transformers", root=root, base=root.parent, version="t", ref="vt", repo_prefix="src/")
    data = (root.parent / rel).read_bytes()
    return data.decode().splitlines(), chunk_file(corpus, rel, data).chunks


def test_an_args_entry_is_a_chunk_with_its_default_and_exact_lines() -> None:
    lines, chunks = chunks_of("transformers/utils/quantization_config.py")
    entry = next(c for c in chunks if c.kind == "argument" and "`load_in_4bit`" in c.text)
    assert entry.symbol == "BitsAndBytesConfig"
    assert "defaults to `False`" in entry.text and "4-bit quantization" in entry.text
    assert lines[entry.start_line - 1].strip().startswith("load_in_4bit (`bool`")
    assert entry.end_line - entry.start_line < 5  # the entry, not the whole docstring
    assert f"#L{entry.start_line}-L{entry.end_line}" in entry.url


def test_dataclass_fields_with_help_are_arguments_too() -> None:
    lines, chunks = chunks_of("transformers/training_args.py")
    rates = [
        c for c in chunks if c.kind == "argument" and c.symbol == "TrainingArguments" and "`learning_rate`" in c.text
    ]
    assert any("5e-5" in c.text for c in rates)  # the docstring's entry
    assert any("learning_rate: float = field(" in lines[c.start_line - 1] for c in rates)  # the field itself


def test_a_docstring_example_is_a_chunk_of_code_without_prompts() -> None:
    lines, chunks = chunks_of("transformers/pipelines/__init__.py")
    examples = [c for c in chunks if c.kind == "example" and c.symbol == "pipeline"]
    assert examples
    first = examples[0]
    assert "pipeline(" in first.text and ">>>" not in first.text
    assert all(lines[n - 1].strip() for n in (first.start_line, first.end_line))


def test_ids_stay_unique_with_many_units_per_symbol() -> None:
    _, chunks = chunks_of("transformers/training_args.py")
    assert len({c.id for c in chunks}) == len(chunks)
