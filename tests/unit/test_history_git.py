"""Commit and diff chunks from a real git history; PR and issue parsing; blame-linked code chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.errors import UserError
from ml.sources.blame import blame_file, parse_porcelain
from ml.sources.git_history import (
    MAX_DIFF_CHARS,
    commit_chunk_id,
    history_chunks,
    parse_issues,
    parse_pr,
    resolve,
)
from tests.support import history_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("minitf")
    history_repo.build(path)
    return path


@pytest.fixture(scope="module")
def by_subject(repo: Path) -> dict[str, tuple]:
    return {c.subject: (c, chunks) for c, chunks in history_chunks(repo, ["main"], "minitf", history_repo.OWNER_REPO)}


@pytest.mark.parametrize(
    ("message", "pr"),
    [
        ("Fix rope scaling (#31245)", 31245),
        ("[Llama] fix (#1) for real (#31246)\n\nbody (#9)", 31246),
        ("Merge pull request #812 from user/branch", 812),
        ("Update README", None),
    ],
)
def test_pr_number_from_squash_and_merge_subjects(message: str, pr: int | None) -> None:
    assert parse_pr(message) == pr


def test_issue_numbers_from_closing_keywords() -> None:
    message = (
        "Fix x (#5)\n\nFixes #10, closes huggingface/transformers#11.\n"
        "Resolves https://github.com/o/r/issues/12\nSee #13"
    )
    assert parse_issues(message) == [10, 11, 12]


def test_one_commit_chunk_per_commit_with_links_and_file_stats(repo: Path, by_subject: dict) -> None:
    commit, chunks = by_subject["Disable use_cache when gradient checkpointing is on (#3)"]
    head = chunks[0]
    assert head.kind == "commit" and head.id == commit_chunk_id("minitf", commit.sha)
    assert (head.pr, head.issue, head.commit) == (3, 10, commit.sha)
    assert head.url == f"https://github.com/example/minitf/commit/{commit.sha}"
    assert "M src/minitf/modeling.py +4 -0" in head.text and "Fixes #10" in head.text
    assert head.date.startswith("2024-01-03")
    diff = chunks[1]
    assert diff.kind == "diff" and diff.path == "src/minitf/modeling.py" and diff.commit == commit.sha
    assert "+            use_cache = False" in diff.text
    # The hunk's lines are those of the file at that commit.
    at_commit = (repo / ".git").parent
    lines = history_repo._git(at_commit, "show", f"{commit.sha}:src/minitf/modeling.py").splitlines()
    assert "use_cache = False" in "\n".join(lines[diff.start_line - 1 : diff.end_line])


def test_rename_delete_merge_and_revert(by_subject: dict) -> None:
    _, rename = by_subject["Move tokenizer into tokenization_llama module (#6)"]
    assert "R src/minitf/tokenizer.py -> src/minitf/tokenization_llama.py" in rename[0].text
    assert any(c.path == "src/minitf/tokenization_llama.py" and "renamed from" in c.text for c in rename)
    _, delete = by_subject["Remove deprecated legacy helpers (#8)"]
    assert delete[1].path == "src/minitf/legacy_utils.py" and "-def legacy_tokenize" in delete[1].text
    merge, merge_chunks = by_subject["Merge pull request #9 from dev/rope-scaling"]
    assert merge.is_merge and merge_chunks[0].pr == 9 and [c.kind for c in merge_chunks] == ["commit"]
    assert "M src/minitf/modeling.py" in merge_chunks[0].text
    revert, revert_chunks = by_subject['Revert "Use bf16 for the default trainer dtype (#12)" (#14)']
    assert revert_chunks[0].pr == 14 and revert_chunks[0].issue == 30 and "reverts " in revert_chunks[0].text


def test_binary_and_huge_diffs_are_summarised_not_dropped(by_subject: dict) -> None:
    _, logo = by_subject["Update logo (#17)"]
    assert [c.text.splitlines()[-1] for c in logo[1:]] == ["binary file modified"]
    _, vocab = by_subject["Add the default vocabulary file (#18)"]
    assert len(vocab) == 2 and "large diff summarised: +6000 -0" in vocab[1].text
    assert all(len(c.text) < MAX_DIFF_CHARS + 400 for _, chunks in by_subject.values() for c in chunks[1:])


def test_ids_are_deterministic_and_unique(repo: Path, by_subject: dict) -> None:
    again = [c.id for _, chunks in history_chunks(repo, ["main"], "minitf", "example/minitf") for c in chunks]
    first = [c.id for _, chunks in by_subject.values() for c in chunks]
    assert sorted(again) == sorted(first) and len(set(first)) == len(first)


def test_blame_lists_the_most_recent_commits_of_a_line_range(repo: Path, by_subject: dict) -> None:
    blame = blame_file(repo, "main", "src/minitf/modeling.py")
    source = (repo / "src/minitf/modeling.py").read_text().splitlines()
    line = next(i for i, x in enumerate(source, 1) if "use_cache = False" in x)
    fix = by_subject["Disable use_cache when gradient checkpointing is on (#3)"][0]
    assert blame.recent(line, line) == [f"{fix.sha}#3"]
    whole = blame.recent(1, len(source), depth=10)
    assert whole[0].endswith("#20") and whole[-1].endswith("#1")  # most recent first


def test_porcelain_parsing_handles_repeated_commits() -> None:
    a, b = "a" * 40, "b" * 40
    text = (
        f"{a} 1 1 2\nauthor X\ncommitter-time 100\nsummary Old (#1)\nfilename f\n\tx\n"
        f"{a} 2 2\n\ty\n"
        f"{b} 3 3 1\nauthor Y\ncommitter-time 200\nsummary New\nfilename f\n\tz\n"
    )
    blame = parse_porcelain(text)
    assert blame.recent(1, 3) == [b, f"{a}#1"] and blame.recent(2, 2) == [f"{a}#1"]


def test_not_a_checkout_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a git checkout"):
        resolve(tmp_path)
