"""Ingest into a real embedded Weaviate and search it: filters, re-ingest, updates and deletions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ml.index.ingest import ingest
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.retrieve import Retriever
from ml.sources.corpus import chunk_file
from tests.integration.conftest import Indexed, make_settings
from tests.support.corpus import make_mini_corpus

pytestmark = pytest.mark.integration


def expected_ids(corpus) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.id for f in corpus.iter_files() for c in chunk_file(corpus, corpus.rel(f), f.read_bytes()).chunks}


def test_ingest_stores_every_chunk_once(indexed: Indexed) -> None:
    assert indexed.report.files_seen == indexed.report.files_changed > 10
    assert indexed.index.count() == len(expected_ids(indexed.corpus)) == indexed.report.chunks_written


def test_hybrid_search_finds_the_symbol_a_question_asks_for(indexed: Indexed) -> None:
    retriever = Retriever(indexed.index, indexed.embedder)
    hits = retriever.search("How are rotary position embeddings applied to queries and keys in Llama?", k=5)
    assert any(
        h.chunk.symbol == "apply_rotary_pos_emb" and h.chunk.path == "transformers/models/llama/modeling_llama.py"
        for h in hits
    )
    top = hits[0].chunk
    assert top.url.startswith("https://github.com/huggingface/transformers/blob/vtest/src/transformers/")
    assert top.url.endswith(f"#L{top.start_line}-L{top.end_line}")


def test_a_message_the_question_quotes_is_searched_alone(indexed: Indexed) -> None:
    retriever = Retriever(indexed.index, indexed.embedder)
    question = (
        'Quantizing Llama with a custom logits processor and a stopping criteria stops with "Invalid axis value. '
        'Only 0 and 1 are allowed." What raises it?'
    )
    candidates, _ = retriever.candidates(question, indexed.embedder.embed_query(question))
    first = next(c.hit.chunk for c in candidates if c.quoted_rank == 1)
    assert (first.path, first.symbol) == ("transformers/utils/quantization_config.py", "HqqConfig.__init__")
    assert "Invalid axis value" in first.text


def test_kind_and_path_prefix_filters(indexed: Indexed) -> None:
    retriever = Retriever(indexed.index, indexed.embedder)
    classes = retriever.search("attention", k=10, kinds=["class"])
    assert classes and all(h.chunk.kind == "class" for h in classes)
    mixtral = retriever.search("attention", k=10, path_prefix="transformers/models/mixtral/")
    assert mixtral and all(h.chunk.path.startswith("transformers/models/mixtral/") for h in mixtral)


def test_reingest_updates_changed_files_and_deletes_removed_ones(tmp_path: Path, indexed: Indexed) -> None:
    corpus = make_mini_corpus(tmp_path / "corpus", ["utils/doc.py", "utils/deprecation.py", "trainer_utils.py"])
    settings = make_settings(tmp_path / "data")
    with WeaviateIndex.open(settings) as index:
        state = StateStore(settings.state_db)
        first = ingest(corpus, index, state, indexed.embedder)
        again = ingest(corpus, index, state, indexed.embedder)
        assert again.files_changed == 0 and again.chunks_written == 0
        assert index.count() == first.total_chunks

        doc = corpus.root / "utils" / "doc.py"
        doc.write_text(doc.read_text() + "\n\ndef brand_new_helper():\n    return 42\n")
        (corpus.root / "utils" / "deprecation.py").unlink()
        third = ingest(corpus, index, state, indexed.embedder)
        assert third.files_changed == 1 and third.files_deleted == 1
        stored = index.ids_for_paths(["transformers/utils/deprecation.py", "transformers/utils/doc.py"])
        assert stored["transformers/utils/deprecation.py"] == set()
        assert index.count() == len(expected_ids(corpus))
        hits = Retriever(index, indexed.embedder).search("brand_new_helper", k=3)
        assert hits[0].chunk.symbol == "brand_new_helper"

        # A newer chunker re-chunks every file, not only the changed ones; ids stay, nothing duplicates.
        state.set_meta({"chunker_version": "0"})
        fourth = ingest(corpus, index, state, indexed.embedder)
        assert fourth.files_changed == fourth.files_seen == 2
        assert index.count() == len(expected_ids(corpus))
        state.close()


def test_damaged_files_are_indexed_and_counted(tmp_path: Path, indexed: Indexed) -> None:
    corpus = make_mini_corpus(tmp_path / "corpus", ["utils/doc.py"])
    (corpus.root / "broken.py").write_text("def broken(:\n    return 'half a file'\n")
    (corpus.root / "latin1.py").write_bytes(b"# r\xe9sum\xe9 helpers\ndef resume_helper():\n    return 1\n")
    shutil.copy2(corpus.root / "utils" / "doc.py", corpus.root / "copy_of_doc.py")
    settings = make_settings(tmp_path / "data")
    with WeaviateIndex.open(settings) as index:
        state = StateStore(settings.state_db)
        report = ingest(corpus, index, state, indexed.embedder)
        state.close()
        assert report.unparsable == ["transformers/broken.py"]
        assert report.non_utf8 == ["transformers/latin1.py"]
        paths = index.ids_for_paths(["transformers/broken.py", "transformers/latin1.py"])
        assert all(paths.values())


def test_a_split_function_is_fetched_whole_for_the_answer(indexed: Indexed) -> None:
    from ml.pipeline import with_bodies
    from ml.types import Hit

    path = "transformers/masking_utils.py"
    stored = [c for c in indexed.index.iter_chunks() if c.path == path and c.symbol == "create_causal_mask"]
    parts = sorted((c for c in stored if c.kind == "function"), key=lambda c: c.start_line)
    assert len(parts) > 1  # the fixture function is long enough to be split
    body = indexed.index.symbol_bodies([(path, "create_causal_mask"), (path, "no_such_symbol")])
    assert set(body) == {(path, "create_causal_mask")}
    whole = body[(path, "create_causal_mask")]
    assert (whole.start_line, whole.end_line) == (parts[0].start_line, parts[-1].end_line)
    lines = (indexed.corpus.base / path).read_text().splitlines()
    assert whole.text == "\n".join(lines[whole.start_line - 1 : whole.end_line])
    assert whole.url.endswith(f"#L{whole.start_line}-L{whole.end_line}")
    # An argument entry of the function gets the function as its body; a module chunk gets none.
    unit = next(c for c in stored if c.kind == "argument")
    doc = next(c for c in indexed.index.iter_chunks() if c.kind == "module")
    hits = with_bodies(indexed.index, [Hit(chunk=unit, score=1.0), Hit(chunk=doc, score=0.5)])
    assert hits[0].body is not None and hits[0].body.text == whole.text
    assert hits[1].body is None


def test_a_class_is_fetched_with_its_methods_code_for_the_answer(indexed: Indexed) -> None:
    path = "transformers/models/llama/modeling_llama.py"
    stored = [c for c in indexed.index.iter_chunks() if c.path == path]
    outline = next(c for c in stored if c.symbol == "LlamaRMSNorm" and c.kind == "class")
    methods = sorted((c for c in stored if c.symbol.startswith("LlamaRMSNorm.") and c.kind == "method"),
                     key=lambda c: c.start_line)  # fmt: skip
    assert {m.symbol for m in methods} >= {"LlamaRMSNorm.__init__", "LlamaRMSNorm.forward"}
    body = indexed.index.symbol_bodies([(path, "LlamaRMSNorm")])[(path, "LlamaRMSNorm")]
    assert (body.kind, body.start_line, body.end_line) == ("class", outline.start_line, outline.end_line)
    lines = (indexed.corpus.base / path).read_text().splitlines()
    for m in methods:  # every method's exact lines, in file order, where the outline had its signature only
        assert "\n".join(lines[m.start_line - 1 : m.end_line]) in body.text
    assert body.text.index("def __init__(") < body.text.index("def forward(")
    assert "variance_epsilon" in body.text and "variance_epsilon" not in outline.text.split('"""')[-1]
