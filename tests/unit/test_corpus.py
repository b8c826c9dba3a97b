"""Corpus resolution, ids, URLs and odd files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ml.errors import UserError
from ml.sources.corpus import chunk_file, resolve_corpus


def test_installed_package_is_cited_at_its_release_tag() -> None:
    corpus = resolve_corpus()
    assert corpus.name == "transformers"
    assert corpus.rel(corpus.root / "utils" / "logging.py") == "transformers/utils/logging.py"
    url = corpus.url("transformers/utils/logging.py", 10, 20)
    assert (
        url
        == f"https://github.com/huggingface/transformers/blob/v{corpus.version}/src/transformers/utils/logging.py#L10-L20"
    )


def test_missing_path_and_package_give_one_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_corpus(path=tmp_path / "nope")
    with pytest.raises(UserError, match="not installed"):
        resolve_corpus(package="no_such_package_xyz")


def test_git_checkout_pins_urls_to_head_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def f():\n    return 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "git@github.com:huggingface/transformers.git"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    corpus = resolve_corpus(path=repo)
    chunk = chunk_file(corpus, "a.py", (repo / "a.py").read_bytes()).chunks[-1]
    assert chunk.commit == sha
    assert chunk.url == f"https://github.com/huggingface/transformers/blob/{sha}/a.py#L1-L2"


def test_ids_are_deterministic_and_repeated_symbols_do_not_collide() -> None:
    corpus = resolve_corpus()
    source = (
        b"from typing import overload\n@overload\ndef f(x: int) -> int: ...\n"
        b"@overload\ndef f(x: str) -> str: ...\ndef f(x):\n    return x\n"
    )
    first = chunk_file(corpus, "transformers/x.py", source)
    second = chunk_file(corpus, "transformers/x.py", source)
    ids = [c.id for c in first.chunks]
    assert ids == [c.id for c in second.chunks]
    assert len(set(ids)) == len(ids)
    assert [c.symbol for c in first.chunks if c.kind == "function"] == ["f", "f", "f"]


def test_non_utf8_file_is_indexed_with_replacement_and_flagged() -> None:
    corpus = resolve_corpus()
    result = chunk_file(corpus, "transformers/latin.py", b"# caf\xe9\ndef f():\n    return 1\n")
    assert result.non_utf8
    assert any(c.symbol == "f" for c in result.chunks)
    assert "\ufffd" in result.chunks[0].text


def test_license_header_is_not_part_of_the_module_chunk() -> None:
    corpus = resolve_corpus()
    source = (
        b"# Copyright 2024 The HuggingFace Team.\n# Licensed under the Apache License.\n\n"
        b"import os\n\n\ndef f():\n    return 1\n"
    )
    module = chunk_file(corpus, "transformers/m.py", source).chunks[0]
    assert module.kind == "module" and module.start_line == 1
    assert "Licensed" not in module.text and "import os" in module.text
