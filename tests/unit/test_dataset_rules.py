"""Rule-based QA pairs from hand-made chunks of every kind, including history (commits, diffs, issues, PRs)."""

from __future__ import annotations

from ml.dataset.rules import generate, parameters
from ml.types import Chunk

FUNCTION = '''def load_model(path: str, dtype: str = "float16", *, device_map=None, **kwargs):
    """Load a model from `path` in the given dtype and place it on devices.

    More details.
    """
    return path'''

COMMIT = """commit 3f2a9c1d0b8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a
Author: dev <dev@example.com>
Date: 2024-05-02T10:00:00+00:00
Links: PR #123

Disable use_cache under gradient checkpointing (#123)

Caching keys and values conflicts with recomputation in the backward pass.

Files changed (1, +4 -0):
  M src/transformers/models/llama/modeling_llama.py +4 -0"""

ISSUE = """Issue #77: Why does generate ignore max_length?
state: closed, opened by @alice on 2024-01-02, closed on 2024-01-05

@alice wrote on 2024-01-02:
Setting max_length has no effect when max_new_tokens is also given.

@bob commented on 2024-01-04:
max_new_tokens takes precedence over max_length; drop one of them and the limit applies."""

PR = """PR #123: Disable use_cache under gradient checkpointing
state: closed, opened by @carol on 2024-05-01, closed on 2024-05-02
merged on 2024-05-02 as commit 3f2a9c1d0b8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a

@carol wrote on 2024-05-01:
Caching conflicts with recomputation, so use_cache is switched off while checkpointing."""


def chunk(**kw) -> Chunk:
    return Chunk(**{"id": kw.pop("id", "c1"), "text": "", "path": "", **kw})


def test_code_chunk_gives_purpose_arguments_and_defaults():
    c = chunk(
        kind="function",
        text=FUNCTION,
        path="transformers/x.py",
        symbol="load_model",
        start_line=1,
        end_line=6,
        signature=FUNCTION.splitlines()[0],
    )
    drafts = {}
    for d in generate([c]):
        drafts.setdefault(d.category, d)
    assert drafts["code_purpose"].question == "What does `load_model` do?"
    assert drafts["code_purpose"].answer == "Load a model from `path` in the given dtype and place it on devices."
    assert drafts["code_arguments"].answer == "path, dtype, device_map, **kwargs"
    # The informative default comes before `None`.
    assert drafts["code_default"].answer == '`dtype` defaults to `"float16"`.'


def test_symbol_defined_in_two_files_names_its_module():
    a = chunk(
        id="a",
        kind="function",
        text=FUNCTION,
        path="transformers/a.py",
        symbol="load_model",
        signature=FUNCTION.splitlines()[0],
    )
    b = a.model_copy(update={"id": "b", "path": "transformers/b.py"})
    questions = {d.question for d in generate([a, b]) if d.category == "code_purpose"}
    assert questions == {
        "What does `load_model` in `transformers.a` do?",
        "What does `load_model` in `transformers.b` do?",
    }


def test_history_chunks_give_commit_issue_and_pr_pairs():
    sha = "3f2a9c1d0b8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
    commit = chunk(id="c", kind="commit", text=COMMIT, commit=sha, pr=123, date="2024-05-02T10:00:00+00:00")
    diff = chunk(
        id="d",
        kind="diff",
        commit=sha,
        path="src/transformers/models/llama/modeling_llama.py",
        text=f"diff of src/transformers/models/llama/modeling_llama.py @ {sha[:12]}, 2024-05-02: "
        "Disable use_cache under gradient checkpointing (#123)\n+        use_cache = False",
    )
    issue = chunk(id="i", kind="issue", text=ISSUE, issue=77, symbol="#77")
    pr = chunk(id="p", kind="pr", text=PR, pr=123, symbol="#123")
    drafts = {d.category: d for d in generate([commit, diff, issue, pr])}
    assert drafts["commit_why"].question == (
        "Why was `src/transformers/models/llama/modeling_llama.py` changed in commit 3f2a9c1?"
    )
    assert "conflicts with recomputation" in drafts["commit_why"].answer
    assert drafts["commit_file_change"].answer == "Disable use_cache under gradient checkpointing (#123)"
    assert drafts["issue_resolution"].question == "Why does generate ignore max_length?"
    assert drafts["issue_resolution"].answer.startswith("max_new_tokens takes precedence")
    assert drafts["pr_change"].answer.startswith("Caching conflicts with recomputation")


def test_open_issue_and_merge_commit_give_nothing():
    open_issue = chunk(kind="issue", text=ISSUE.replace("state: closed", "state: open"), issue=77)
    merge = chunk(kind="commit", text=COMMIT.replace("Links:", "Merge of aaa bbb\nLinks:"), commit="3f2a")
    assert list(generate([open_issue, merge])) == []


def test_parameters_keep_defaults_as_written():
    assert parameters("def f(self, a, b=1e-5, *args, c: int = 3, **kw) -> None:") == [
        ("a", None),
        ("b", "1e-5"),
        ("*args", None),
        ("c", "3"),
        ("**kw", None),
    ]
    assert parameters("class A:") is None
