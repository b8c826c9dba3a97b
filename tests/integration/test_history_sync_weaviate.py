"""Step-by-step sync into a real Weaviate equals a from-scratch sync of each commit, across a crash and a re-run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.index.embed import Embedder
from ml.index.engine import IndexSink
from ml.index.git_sync import sync_git
from ml.index.state import StateStore
from ml.index.weaviate_index import WeaviateIndex
from ml.sources.git_history import commit_url
from ml.types import FILE_KINDS, Chunk
from tests.integration.conftest import make_settings
from tests.support import history_repo

pytestmark = pytest.mark.integration

OWNER = history_repo.OWNER_REPO


class CachedEmbedder:
    """The session's real embedder, remembering vectors by text: every from-scratch sync re-embeds the same texts."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.model_name = inner, inner.model_name
        self.vectors: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])


class CrashingSink(IndexSink):
    """Writes half of its `crash_at`-th batch to Weaviate, then fails as if the process died mid-write."""

    def __init__(self, index: WeaviateIndex, embedder: Any, crash_at: int) -> None:
        super().__init__(index, embedder)
        self.crash_at, self.writes = crash_at, 0

    def write(self, chunks: list[Chunk], vectors: Any) -> None:
        self.writes += 1
        if self.writes == self.crash_at:
            super().write(chunks[: len(chunks) // 2], vectors[: len(chunks) // 2])
            raise ConnectionError("killed mid-write")
        super().write(chunks, vectors)


def read_back(index: WeaviateIndex) -> dict[str, tuple[Any, ...]]:
    """id -> what a citation is made of, as stored in Weaviate."""
    return {
        c.id: (c.kind, c.path, c.start_line, c.end_line, c.symbol, c.text, c.commit, tuple(c.history), c.url, c.pr)
        for c in index.iter_chunks()
    }


def stored_vectors(index: WeaviateIndex) -> dict[str, np.ndarray]:
    return {
        str(o.uuid): np.asarray(o.vector["default"], dtype=np.float32)
        for o in index.collection.iterator(include_vector=True, return_properties=[])
    }


class CountingEmbedder:
    """Counts the texts a sink asks to embed (a sync reuses the stored vector of a chunk whose text is unchanged)."""

    def __init__(self, inner: CachedEmbedder) -> None:
        self.inner, self.model_name, self.asked = inner, inner.model_name, 0

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.asked += len(texts)
        return self.inner.embed_documents(texts)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def check_citations(repo: Path, head: str, chunks: Iterable[Chunk]) -> int:
    """Every code chunk cites the last commit that changed its file, at lines holding its text; history chunks cite
    commits of `head`'s history. Returns how many chunks were checked."""
    live = set(git(repo, "rev-list", head).split())
    files: dict[tuple[str, str], list[str]] = {}
    checked = 0
    for c in chunks:
        if c.kind in FILE_KINDS:
            pin = git(repo, "log", "--first-parent", "-1", "--format=%H", head, "--", c.path).strip()
            assert c.commit == pin, (c.path, c.symbol)
            assert c.url == f"https://github.com/{OWNER}/blob/{pin}/{c.path}#L{c.start_line}-L{c.end_line}"
            lines = files.setdefault((pin, c.path), git(repo, "show", f"{pin}:{c.path}").splitlines())
            assert git(repo, "show", f"{head}:{c.path}").splitlines() == lines  # the pin's file is head's file
            cited = lines[c.start_line - 1 : c.end_line]
            assert cited and c.end_line <= len(lines)
            if c.kind == "class":  # a class chunk is its outline: header and member signatures
                assert c.text.splitlines()[0] == cited[0].strip()
            else:
                assert "\n".join(cited).strip() in c.text, (c.path, c.symbol)
            assert all(ref.split("#")[0] in live for ref in c.history)
        else:
            assert c.commit in live and c.url.startswith(commit_url(OWNER, c.commit))
            if c.kind == "diff" and c.start_line and "#diff-" in c.url and c.url.endswith(f"R{c.start_line}"):
                changed = files.setdefault((c.commit, c.path), git(repo, "show", f"{c.commit}:{c.path}").splitlines())
                assert c.end_line <= len(changed)
        checked += 1
    return checked


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("minitf")
    return repo, history_repo.build(repo)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WeaviateIndex, WeaviateIndex]]:
    """The synced index and, in the same server, a second collection rebuilt from scratch at every step."""
    main = WeaviateIndex.open(make_settings(tmp_path_factory.mktemp("data")))
    scratch = WeaviateIndex(main.client, "Scratch")
    try:
        yield main, scratch
    finally:
        main.close()


def test_step_by_step_sync_into_weaviate_equals_a_fresh_sync_of_each_commit(
    built: tuple[Path, list[str]],
    indexes: tuple[WeaviateIndex, WeaviateIndex],
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ml.index.engine
    import ml.index.git_sync

    repo, heads = built
    main, scratch = indexes
    cached = CachedEmbedder(embedder)
    counting, written = CountingEmbedder(cached), 0
    main.ensure_collection()
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    crash_head = heads[11]  # the merge of the feature branch: three commits, a modified README and modeling.py
    torn: dict[str, tuple[Any, ...]] = {}
    steps = list(dict.fromkeys(heads))
    for n, head in enumerate(steps):
        if head == crash_head:
            # Small batches give the sync several writes: write 1 re-chunks the two changed files; write 2, the
            # first of two commit batches, is torn.
            with monkeypatch.context() as m, pytest.raises(ConnectionError):
                m.setattr(ml.index.engine, "BATCH_FILES", 2)
                m.setattr(ml.index.git_sync, "BATCH_COMMITS", 2)
                sync_git(repo, CrashingSink(main, cached, crash_at=2), state, OWNER, head)
            assert state.get("head") == steps[n - 1]  # the recorded head did not move
            torn = read_back(main)
        report = sync_git(repo, IndexSink(main, counting), state, OWNER, head)
        written += report.chunks_written
        assert state.get("head") == head

        scratch.drop()
        scratch.ensure_collection()
        fresh_state = StateStore(tmp_path / f"scratch-{n}.sqlite", "minitf")
        sync_git(repo, IndexSink(scratch, cached), fresh_state, OWNER, head)
        fresh_state.close()

        got, want = read_back(main), read_back(scratch)
        assert sorted(got) == sorted(want), f"step {n}: ids differ by {len(set(got) ^ set(want))}"
        differing = [i for i in got if got[i] != want[i]]
        assert not differing, f"step {n}: {got[differing[0]][:5]} != {want[differing[0]][:5]}"
        assert main.count() == len(got)  # no duplicates behind the iterator
        # Reused vectors are the vectors of the chunk's text now: the same as a from-scratch embedding.
        got_vectors, want_vectors = stored_vectors(main), stored_vectors(scratch)
        assert all(np.array_equal(got_vectors[i], want_vectors[i]) for i in want_vectors), f"step {n}: vectors differ"
        if head == crash_head:
            assert torn and torn != got  # the re-run repaired a state the crash really left incomplete
        assert check_citations(repo, head, main.iter_chunks()) == len(got)
    state.close()
    assert torn and len(steps) >= 20
    # Re-chunked files whose chunks kept their text were not embedded again.
    assert counting.asked < written, (counting.asked, written)

    # The final index answers with the commit that changed the code, at the right lines.
    final = {c.id: c for c in main.iter_chunks()}
    forward = next(c for c in final.values() if c.symbol == "LlamaModel.forward")
    fix = history_repo.gold_shas(repo, {3}).pop()
    assert f"{fix}#3" in forward.history
    assert not any(c.path == "src/minitf/legacy_utils.py" and c.kind in FILE_KINDS for c in final.values())
