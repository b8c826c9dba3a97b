"""Incremental sync equals a from-scratch sync after every step of a realistic history, a force-push and a crash."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from ml.index.git_sync import sync_git
from ml.index.staging import append_staging
from ml.index.state import StateStore
from ml.types import FILE_KINDS, Chunk
from tests.support import history_repo


class DictSink:
    """An in-memory index for unit tests: id -> chunk; can be told to fail after N writes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.chunks: dict[str, Chunk] = {}
        self.fail_after = fail_after
        self.writes = 0

    def embed(self, chunks: list[Chunk]) -> None:
        return None

    def write(self, chunks: list[Chunk], vectors: None) -> None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise ConnectionError("index went away")
        self.writes += 1
        for c in chunks:
            self.chunks[c.id] = c

    def delete(self, ids: Iterable[str]) -> int:
        return sum(self.chunks.pop(i, None) is not None for i in ids)

    def file_ids(self, paths: list[str]) -> set[str]:
        wanted = set(paths)
        return {i for i, c in self.chunks.items() if c.path in wanted and c.kind in FILE_KINDS}


def scratch(repo: Path, rev: str, tmp: Path) -> dict[str, Chunk]:
    sink = DictSink()
    state = StateStore(tmp / f"scratch-{rev}.sqlite", "minitf")
    sync_git(repo, sink, state, history_repo.OWNER_REPO, rev)
    state.close()
    return sink.chunks


def assert_same(got: dict[str, Chunk], want: dict[str, Chunk]) -> None:
    assert sorted(got) == sorted(want), (set(got) ^ set(want)) and [
        (x.kind, x.path, x.symbol) for x in list(got.values()) + list(want.values()) if x.id in set(got) ^ set(want)
    ]
    diff = [i for i in got if got[i] != want[i]]
    assert not diff, [(got[i], want[i]) for i in diff[:1]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("repo")
    return repo, history_repo.build(repo)


def test_step_by_step_sync_equals_from_scratch(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, heads = built
    sink = DictSink()
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    seen = []
    for head in dict.fromkeys(heads):  # branch-only steps leave main where it was
        report = sync_git(repo, sink, state, history_repo.OWNER_REPO, head)
        seen.append(report)
        assert_same(sink.chunks, scratch(repo, head, tmp_path))
    assert not any(r.force_push for r in seen)
    # Incremental steps re-chunk only what changed: one file for a one-file commit.
    one_file = next(r for r in seen if r.new == heads[3])
    assert (one_file.commits_added, one_file.files_changed) == (1, 1)
    merge = next(r for r in seen if r.new == heads[11])
    assert merge.commits_added == 3  # two branch commits and the merge commit


def test_code_chunks_are_pinned_and_linked_to_the_commits_that_changed_them(built: tuple[Path, list[str]], tmp_path):
    repo, heads = built
    chunks = scratch(repo, heads[-1], tmp_path)
    forward = next(c for c in chunks.values() if c.symbol == "LlamaModel.forward")
    fix = history_repo.gold_shas(repo, {3}).pop()
    assert f"{fix}#3" in forward.history
    config = next(c for c in chunks.values() if c.symbol == "LlamaConfig.__init__")
    assert config.history[0].endswith("#11")  # rope_theta raised most recently
    # Pinned to the last commit that changed the file, whose file equals HEAD's: the cited lines are right there.
    shown = subprocess.run(
        ["git", "-C", str(repo), "show", f"{config.commit}:{config.path}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "\n".join(shown[config.start_line - 1 : config.end_line]) in config.text
    assert config.url.startswith(
        f"https://github.com/example/minitf/blob/{config.commit}/src/minitf/configuration.py#L"
    )
    assert not any(c.path == "src/minitf/legacy_utils.py" and c.kind not in ("commit", "diff") for c in chunks.values())


def test_force_push_falls_back_to_a_tree_diff(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, heads = built
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "-q", str(repo), str(fork)], check=True)
    git = ["git", "-C", str(fork), "-c", "user.name=X", "-c", "user.email=x@example.com"]
    sink = DictSink()
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    sync_git(fork, sink, state, history_repo.OWNER_REPO, "HEAD")
    # Rewrite the last two commits: amend the tip's parent with a different change and drop the tip.
    subprocess.run([*git, "reset", "-q", "--hard", "HEAD~2"], check=True)
    (fork / "src/minitf/trainer.py").write_text((fork / "src/minitf/trainer.py").read_text() + "\n# rewritten\n")
    subprocess.run([*git, "commit", "-q", "-am", "Rewritten history (#99)"], check=True)
    report = sync_git(fork, sink, state, history_repo.OWNER_REPO, "HEAD")
    assert report.force_push and report.commits_removed == 2 and report.commits_added == 1
    assert_same(sink.chunks, scratch(fork, "HEAD", tmp_path))


@pytest.mark.parametrize("fail_after", [0, 1, 3, 5])
def test_a_crash_mid_sync_then_rerun_gives_the_same_index(
    built: tuple[Path, list[str]], tmp_path: Path, fail_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml.index.engine
    import ml.index.git_sync

    # Small batches give the crash many places to land: between file batches, between commit batches.
    monkeypatch.setattr(ml.index.engine, "BATCH_FILES", 2)
    monkeypatch.setattr(ml.index.git_sync, "BATCH_COMMITS", 4)
    repo, heads = built
    sink = DictSink()
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    sync_git(repo, sink, state, history_repo.OWNER_REPO, heads[5])
    sink.fail_after, sink.writes = fail_after, 0
    with pytest.raises(ConnectionError):
        sync_git(repo, sink, state, history_repo.OWNER_REPO, heads[-1])
    assert state.get("head") == heads[5]  # the cursor did not move
    sink.fail_after = None
    sync_git(repo, sink, state, history_repo.OWNER_REPO, heads[-1])
    assert state.get("head") == heads[-1]
    assert_same(sink.chunks, scratch(repo, heads[-1], tmp_path))


def test_staging_buffer_records_what_changed(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    import json

    repo, heads = built
    sink = DictSink()
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    sync_git(repo, sink, state, history_repo.OWNER_REPO, heads[-2])
    report = sync_git(repo, sink, state, history_repo.OWNER_REPO, heads[-1])
    staging = tmp_path / "staging" / "changes.jsonl"
    assert append_staging(staging, report, "git") == 2
    lines = [json.loads(x) for x in staging.read_text().splitlines()]
    assert [x["what"] for x in lines] == ["files_changed", "commits_added"]
    assert lines[1]["commits"] == [heads[-1]] and lines[0]["paths"] == ["src/minitf/trainer.py"]
    assert set(lines[1]["ids"]) <= set(sink.chunks) and lines[1]["to"] == heads[-1]
