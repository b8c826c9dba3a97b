"""GitHub sync against a recorded-format server: issue and PR threads become chunks, the cursor is crash-safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.index.github_sync import sync_github
from ml.index.state import StateStore
from ml.sources.github import GitHubClient, GitHubError
from tests.support.github_server import FakeGitHub, Reply, comment, issue
from tests.unit.test_history_sync import DictSink

pytestmark = pytest.mark.integration

REPO = "/repos/example/minitf"


def serve_items(gh: FakeGitHub, second_page: Reply) -> None:
    page2 = f"{REPO}/issues?page=2"
    gh.add(
        f"{REPO}/issues",
        Reply(
            body=[
                issue(10, "2024-01-05T00:00:00Z", "use_cache breaks gradient checkpointing", "Training crashes."),
                issue(3, "2024-01-06T00:00:00Z", "Disable use_cache under checkpointing", "Fixes #10", pr=True),
            ],
            headers={"Link": f'<{{base}}{page2}>; rel="next"'},
        ),
    )
    gh.add(page2, second_page)
    gh.add(
        f"{REPO}/issues/10/comments",
        Reply(body=[comment(1, "bob", "Same here with Llama."), comment(2, "carol", "Fixed by #3.")]),
    )
    gh.add(f"{REPO}/issues/3/comments", Reply(body=[comment(3, "dave", "LGTM")]))
    gh.add(f"{REPO}/issues/12/comments", Reply(body=[]))
    gh.add(
        f"{REPO}/pulls/3",
        Reply(
            body={
                "number": 3,
                "merged_at": "2024-01-06T00:00:00Z",
                "merge_commit_sha": "f" * 40,
                "base": {"ref": "main"},
                "head": {"ref": "fix-cache"},
            }
        ),
    )
    gh.add(
        f"{REPO}/pulls/3/comments",
        Reply(
            body=[
                {
                    "id": 77,
                    "path": "src/minitf/modeling.py",
                    "line": 57,
                    "diff_hunk": "@@ -55,3 +55,6 @@\n+        if self.gradient_checkpointing and use_cache:",
                    "user": {"login": "erin"},
                    "created_at": "2024-01-05T12:00:00Z",
                    "body": "Warn instead of raising here.",
                }
            ]
        ),
    )
    gh.add(
        f"{REPO}/pulls/3/reviews",
        Reply(
            body=[
                {
                    "id": 5,
                    "state": "APPROVED",
                    "user": {"login": "erin"},
                    "submitted_at": "2024-01-05T13:00:00Z",
                    "body": "",
                }
            ]
        ),
    )


def test_threads_become_linked_chunks_and_the_cursor_advances(tmp_path: Path) -> None:
    with FakeGitHub() as gh:
        serve_items(gh, Reply(body=[issue(12, "2024-01-07T00:00:00Z", "NaN in fp16", "", comments=0)]))
        state = StateStore(tmp_path / "state.sqlite", "minitf")
        sink = DictSink()
        with GitHubClient("example/minitf", api_url=gh.url, etags=state.etags()) as client:
            report = sync_github(client, sink, state, "example/minitf")
    assert report.items_synced == 3 and state.get("github_since") == "2024-01-07T00:00:00Z"
    chunks = list(sink.chunks.values())
    issue10 = next(c for c in chunks if c.kind == "issue" and c.issue == 10)
    assert (
        "@bob commented on 2024-01-03" in issue10.text and issue10.url == "https://github.com/example/minitf/issues/10"
    )
    pr = next(c for c in chunks if c.kind == "pr" and c.path == "")
    assert (pr.pr, pr.issue, pr.commit) == (3, 10, "f" * 40)
    assert "merged on 2024-01-06" in pr.text and "@erin reviewed (approved)" in pr.text
    review = next(c for c in chunks if c.kind == "pr" and c.path == "src/minitf/modeling.py")
    assert review.start_line == 57 and "Warn instead of raising here." in review.text
    assert review.url.endswith("/pull/3#discussion_r77")


def test_a_malformed_page_leaves_the_cursor_at_the_last_written_page(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.sqlite", "minitf")
    sink = DictSink()
    with FakeGitHub() as gh:
        serve_items(gh, Reply(raw=b"<html>502 Bad Gateway</html>"))
        with GitHubClient("example/minitf", api_url=gh.url) as client, pytest.raises(GitHubError, match="malformed"):
            sync_github(client, sink, state, "example/minitf")
    assert state.get("github_since") == "2024-01-06T00:00:00Z"  # page 1 written, page 2 not
    written = dict(sink.chunks)
    with FakeGitHub() as gh:
        serve_items(gh, Reply(body=[issue(12, "2024-01-07T00:00:00Z", "NaN in fp16", "", comments=0)]))
        with GitHubClient("example/minitf", api_url=gh.url) as client:
            sync_github(client, sink, state, "example/minitf")
        assert "since=2024-01-06T00%3A00%3A00Z" in gh.log[0].path
    assert state.get("github_since") == "2024-01-07T00:00:00Z"
    assert set(written) < set(sink.chunks) and all(sink.chunks[i] == c for i, c in written.items())
