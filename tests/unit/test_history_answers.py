"""History answers on the synthetic history repository: who, when, which PR, what changed, since when, and
abstention on changes that never happened; links for checkouts whose origin is not on GitHub."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ml.answer.extractive import ExtractiveAnswerer
from ml.answer.history import (
    NO_SUCH_CHANGE,
    SUPPORT_THRESHOLD,
    CommitEvidence,
    before_after,
    changed_span,
    distinctive,
    group_commits,
    key_terms,
    question_kind,
    support,
)
from ml.errors import UserError
from ml.retrieve import words
from ml.sources.git_checkout import CheckoutSource, owner_repo_of
from ml.sources.git_history import branch_links, commit_url, history_chunks
from ml.types import Chunk, Hit
from tests.support import history_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("minitf")
    history_repo.build(path)
    return path


@pytest.fixture(scope="module")
def chunks(repo: Path) -> list[Chunk]:
    merged = branch_links(repo, "main")
    return [
        c for _, made in history_chunks(repo, ["main"], "minitf", history_repo.OWNER_REPO, True, merged) for c in made
    ]


def _log(repo: Path, pr: int, fmt: str) -> str:
    sha = next(iter(history_repo.gold_shas(repo, {pr})))
    return subprocess.run(
        ["git", "-C", str(repo), "log", "-1", f"--format={fmt}", sha], capture_output=True, text=True
    ).stdout.strip()


def _hits(question: str, chunks: list[Chunk], k: int = 8) -> list[Hit]:
    """A lexical stand-in for the retriever: chunks ranked by how many question words they contain."""
    q = {w for w in words(question) if len(w) > 2}
    scored = sorted(((len(q & set(words(c.text))), i) for i, c in enumerate(chunks)), key=lambda t: (-t[0], t[1]))
    return [Hit(chunk=chunks[i], score=float(s), dense=0.5) for s, i in scored[:k]]


def _ask(question: str, chunks: list[Chunk]):
    return ExtractiveAnswerer().answer(question, _hits(question, chunks))


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who raised the default rope_theta to 500000?", "who"),
        ("When did sdpa become the default attention implementation?", "when"),
        ("Since when does generate accept top_k?", "first"),
        ("Which PR added repetition_penalty?", "pr"),
        ("What changed in the default attn_implementation?", "what"),
        ("What happens when use_cache is True?", ""),
        ("Why does generate print a message about pad_token_id?", ""),
    ],
)
def test_question_kinds(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_key_terms_weigh_identifiers_above_words() -> None:
    terms = key_terms("When was `rope_theta` raised to 500000 in the config?")
    assert terms["rope_theta"] == 3.0 and terms["500000"] == 3.0 and terms["config"] == 1.0
    assert "when" not in terms and "raised" in terms


def test_who_names_the_author_and_date(repo: Path, chunks: list[Chunk]) -> None:
    answer = _ask("Who raised the default rope_theta to 500000?", chunks)
    assert not answer.abstained
    assert _log(repo, 11, "%an") in answer.answer and _log(repo, 11, "%cs") in answer.answer
    assert answer.sources[0].pr == 11 and "[1]" in answer.answer


def test_when_gives_date_and_pr_with_its_issue(repo: Path, chunks: list[Chunk]) -> None:
    answer = _ask("When was the off-by-one in max_new_tokens fixed?", chunks)
    assert _log(repo, 10, "%cs") in answer.answer and "PR #10" in answer.answer and "issue #20" in answer.answer
    assert f"https://github.com/{history_repo.OWNER_REPO}/pull/10" in answer.answer


def test_what_changed_shows_removed_and_added_lines(chunks: list[Chunk]) -> None:
    answer = _ask("What changed in the default attn_implementation?", chunks)
    before = [line for line in answer.answer.splitlines() if "before:" in line]
    after = [line for line in answer.answer.splitlines() if "after:" in line]
    assert before and after, answer.answer
    assert '"eager"' in before[0] and '"sdpa"' in after[0]
    assert "    changed: `eager` -> `sdpa`" in answer.answer.splitlines()


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        ("    safe_serialization: bool = False,", "    safe_serialization: bool = True,", ("False", "True")),
        ('python_requires=">=3.8.0",', 'python_requires=">=3.9.0",', ("3.8.0", "3.9.0")),
        (
            "loaded with `torch_dtype=torch.float16` first",
            "loaded with `dtype=torch.float16` first",
            ("torch_dtype", "dtype"),
        ),
        ("    nblocks: int = (", "    nblocks: int = field(", ("(", "field(")),
        ("def pick(logits, top_k):", "completely different text of another length entirely", None),
    ],
)
def test_changed_span_is_the_edited_value(old: str, new: str, span: tuple[str, str] | None) -> None:
    assert changed_span(old, new) == span


def test_an_edit_naming_the_asked_thing_on_both_sides_beats_a_line_naming_it_once() -> None:
    """A test line that gains `safe_serialization=True` names it more often than the source edit; the source edit
    names it before and after, so it is the change the question asks about."""
    test_diff = (
        "tests/testing_common.py\n"
        "-    def _test_save_pretrained(self, model_id, config_cls):\n"
        "+    def _test_save_pretrained(self, model_id, config_cls, safe_serialization=True):\n"
        "+        model.save_pretrained(tmp, safe_serialization=safe_serialization)\n"
    )
    source_diff = (
        "src/peft/peft_model.py\n"
        "-        safe_serialization: bool = False,\n"
        "+        safe_serialization: bool = True,\n"
    )
    ev = CommitEvidence("a" * 40, 1, 1.0)
    for path, text in (("tests/testing_common.py", test_diff), ("src/peft/peft_model.py", source_diff)):
        ev.chunks.append(Chunk(id=path, kind="diff", text=text, path=path, commit="a" * 40))
    lines = before_after(ev, key_terms("What changed in the safe_serialization default of save_pretrained?"))
    assert lines[0] == "In src/peft/peft_model.py:"
    assert lines[-1] == "    changed: `False` -> `True`"


def test_since_when_takes_the_oldest_supporting_commit(repo: Path, chunks: list[Chunk]) -> None:
    # PR 2 added top_k; PR 13 edited the same signature line later and also mentions top_k.
    hits = _hits("Since when does generate accept top_k?", chunks)
    assert {h.chunk.pr for h in hits} >= {2, 13}
    answer = ExtractiveAnswerer().answer("Since when does generate accept top_k?", hits)
    assert answer.answer.startswith("First introduced on " + _log(repo, 2, "%cs"))
    assert "PR #2" in answer.answer.splitlines()[0]


def test_branch_commits_inherit_the_merge_pr(chunks: list[Chunk]) -> None:
    rope = [c for c in chunks if c.kind == "commit" and "Add dynamic rope scaling" in c.symbol]
    assert rope and rope[0].pr == 9
    answer = _ask("Which PR added dynamic rope scaling with scaling_factor?", chunks)
    assert "PR #9" in answer.answer.splitlines()[0]


@pytest.mark.parametrize(
    "question",
    [
        "When was beam search added to generate?",
        "Who added flash_attention_3 support to LlamaAttention?",
        "Which PR removed the top_p argument from pick?",
    ],
)
def test_changes_that_never_happened_are_abstained(question: str, chunks: list[Chunk]) -> None:
    answer = _ask(question, chunks)
    assert answer.abstained and answer.answer.startswith(NO_SUCH_CHANGE) and not answer.sources


def test_code_questions_are_left_to_the_code_answer(chunks: list[Chunk]) -> None:
    answer = _ask("What happens when use_cache is True?", chunks)
    assert NO_SUCH_CHANGE not in answer.answer and "First introduced" not in answer.answer


def _clone(repo: Path, dest: Path, origin: str | None) -> Path:
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    if origin is None:
        subprocess.run(["git", "-C", str(dest), "remote", "remove", "origin"], check=True)
    elif origin:
        subprocess.run(["git", "-C", str(dest), "remote", "set-url", "origin", origin], check=True)
    return dest


def test_links_for_a_checkout_without_a_github_origin(repo: Path, tmp_path: Path) -> None:
    local = _clone(repo, tmp_path / "local", "")  # origin is the local path
    where = owner_repo_of(local)
    assert where == f"file://{local.resolve().as_posix()}"
    assert commit_url(where, "a" * 40) == ""
    made = [c for _, cs in history_chunks(local, ["-n", "3", "main"], "minitf", where) for c in cs]
    assert made and all(c.url == "" for c in made)
    source = CheckoutSource(local, "main", "minitf", where)
    versions, _ = source.versions()
    code = [c for f in source.chunks(sorted(versions)[:2]) for c in f.chunks]
    assert code and all(c.url.startswith(f"file://{local.resolve().as_posix()}/") for c in code)
    assert not any("huggingface" in c.url for c in made + code)


def test_links_from_repo_url_and_github_origin(repo: Path, tmp_path: Path) -> None:
    gitlab = _clone(repo, tmp_path / "gl", "https://gitlab.example.com/team/minitf.git")
    assert owner_repo_of(gitlab) == f"file://{gitlab.resolve().as_posix()}"
    assert owner_repo_of(gitlab, repo_url="https://github.com/team/minitf/") == "team/minitf"
    assert (
        owner_repo_of(gitlab, repo_url="https://git.example.com/team/minitf") == "https://git.example.com/team/minitf"
    )
    assert (
        commit_url("https://git.example.com/team/minitf", "b" * 40)
        == "https://git.example.com/team/minitf/commit/" + "b" * 40
    )
    with pytest.raises(UserError, match="not a URL"):
        owner_repo_of(gitlab, repo_url="minitf")
    hub = _clone(repo, tmp_path / "gh", "git@github.com:team/minitf.git")
    assert owner_repo_of(hub) == "team/minitf"
    none = _clone(repo, tmp_path / "none", None)
    assert owner_repo_of(none, default="example/minitf") == "example/minitf"


def test_who_questions_route_to_history_but_who_calls_does_not() -> None:
    from ml.retrieve_history import history_intent

    assert history_intent("Who implemented DoRA in PEFT?") >= 0.5
    assert history_intent("Who made safe_serialization the default?") >= 0.5
    assert history_intent("Who calls apply_rotary_pos_emb?") == 0.0


def test_what_changed_quotes_the_chosen_commits_whole_diff() -> None:
    """Retrieval returned the commit and its test's diff, not the diff of the edited line: the answer quotes the edit
    all the same, from the commit's whole diff, and the commit it answers from is still the one retrieved."""
    sha = "ab" * 20
    head = "Make sdpa the default attn_implementation (#4)"
    commit = Chunk(
        id="c",
        kind="commit",
        path="",
        commit=sha,
        pr=4,
        symbol=f"{sha[:7]} {head}",
        date="2024-01-04T00:00:00",
        text=f"commit {sha}\nAuthor: Dev Two\nDate: 2024-01-04\n\n{head}",
        url=f"https://github.com/o/r/commit/{sha}",
    )
    test_diff = Chunk(
        id="t",
        kind="diff",
        path="tests/test_config.py",
        commit=sha,
        pr=4,
        date="2024-01-04T00:00:00",
        text="diff of tests/test_config.py\n-    config = LlamaConfig()\n"
        '+    config = LlamaConfig(attn_implementation="sdpa")\n',
    )
    source_diff = Chunk(
        id="s",
        kind="diff",
        path="src/minitf/configuration.py",
        commit=sha,
        pr=4,
        date="2024-01-04T00:00:00",
        text='diff of src/minitf/configuration.py\n-        attn_implementation="eager",\n'
        '+        attn_implementation="sdpa",\n',
    )
    hits = [Hit(chunk=commit, score=2.0, dense=0.5), Hit(chunk=test_diff, score=1.0, dense=0.5)]
    question = "What changed in the default attn_implementation?"

    without = ExtractiveAnswerer().answer(question, hits)
    with_diffs = ExtractiveAnswerer(diffs=lambda c: [test_diff, source_diff] if c == sha else []).answer(question, hits)
    assert not without.abstained and "changed: `eager` -> `sdpa`" not in without.answer
    assert with_diffs.answer.splitlines()[0] == without.answer.splitlines()[0]  # the same commit, as retrieved
    assert "In src/minitf/configuration.py:" in with_diffs.answer.splitlines()
    assert "    changed: `eager` -> `sdpa`" in with_diffs.answer.splitlines()


def test_a_removal_question_picks_the_commit_that_removed_it() -> None:
    """Both commits name python_requires and 3.8; the one that raised the floor *to* 3.8 ranks first, but the
    question asks when 3.8 was dropped."""

    def commit(sha: str, day: str, subject: str, removed: str, added: str) -> list[Chunk]:
        base = dict(commit=sha, date=f"2024-01-{day}T00:00:00", url=f"https://github.com/o/r/commit/{sha}")
        return [
            Chunk(id=f"{sha}c", kind="commit", path="", symbol=f"{sha[:7]} {subject}", text=subject, **base),
            Chunk(id=f"{sha}d", kind="diff", path="setup.py", text=f"diff of setup.py\n-{removed}\n+{added}\n", **base),
        ]

    require = commit(
        "1" * 40, "01", "Require Python 3.8 (#1)", '  python_requires=">=3.7.0",', '  python_requires=">=3.8.0",'
    )
    drop = commit(
        "2" * 40, "02", "End of life for 3.8 (#2)", '  python_requires=">=3.8.0",', '  python_requires=">=3.9.0",'
    )
    hits = [Hit(chunk=c, score=2.0 - i * 0.1, dense=0.5) for i, c in enumerate(require + drop)]
    answer = ExtractiveAnswerer().answer("What did python_requires change to when Python 3.8 was dropped?", hits)
    assert answer.answer.startswith(f"Commit {'2' * 7}"), answer.answer
    assert "    changed: `3.8.0` -> `3.9.0`" in answer.answer.splitlines()
    added = ExtractiveAnswerer().answer("What did python_requires change to when Python 3.8 was required?", hits)
    assert added.answer.startswith(f"Commit {'1' * 7}"), added.answer  # not a removal: retrieval order stands


def test_a_removal_nobody_made_is_not_answered_from_the_commit_that_added_it() -> None:
    sha = "3" * 40
    base = dict(commit=sha, date="2021-04-26T00:00:00", url=f"https://github.com/o/r/commit/{sha}")
    hits = [
        Hit(
            chunk=Chunk(
                id="c",
                kind="commit",
                path="",
                symbol=f"{sha[:7]} Notebook launcher (#44)",
                text="Notebook launcher (#44)",
                **base,
            ),
            score=2.0,
            dense=0.5,
        ),
        Hit(
            chunk=Chunk(
                id="d",
                kind="diff",
                path="src/launchers.py",
                text="diff of src/launchers.py\n+def notebook_launcher(function, args=()):\n",
                **base,
            ),
            score=1.0,
            dense=0.5,
        ),
    ]
    added = ExtractiveAnswerer().answer("Who added the notebook_launcher function?", hits)
    assert not added.abstained and "Notebook launcher (#44)" in added.answer
    removed = ExtractiveAnswerer().answer("Who removed the notebook_launcher function?", hits)
    assert removed.abstained and removed.answer.startswith(NO_SUCH_CHANGE), removed.answer


def _commit(sha: str, subject: str, *diffs: tuple[str, str]) -> list[Chunk]:
    """A commit chunk and its diff chunks (path, diff body with +/- lines), as git history ingests them."""
    pr = int(subject.rsplit("(#", 1)[1].rstrip(")")) if "(#" in subject else None
    base = dict(commit=sha, pr=pr, date="2024-03-01T00:00:00", url=f"https://github.com/o/r/commit/{sha}")
    head = f"commit {sha}\nAuthor: Dev One\nDate: 2024-03-01\n\n{subject}\n\nFiles changed (1, +1 -1):\n  M x.py"
    chunks = [Chunk(id=f"{sha}c", kind="commit", path="", symbol=f"{sha[:7]} {subject}", text=head, **base)]
    for n, (path, body) in enumerate(diffs):
        text = f"diff of {path} @ {sha[:12]}, 2024-03-01: {subject}\nauthor: Dev One\n{body}"
        chunks.append(Chunk(id=f"{sha}d{n}", kind="diff", path=path, text=text, **base))
    return chunks


def _ranked(*commits: list[Chunk]) -> list[Hit]:
    chunks = [c for commit in commits for c in commit]
    return [Hit(chunk=c, score=2.0 - i * 0.05, dense=0.5) for i, c in enumerate(chunks)]


def test_a_default_claim_is_not_supported_by_a_commit_that_only_mentions_default() -> None:
    """The doc line says "By default" and "FP8 mixed precision" before and after the edit; what changed is the rest
    of the sentence, so the commit makes nothing the default. A commit that says it does answers the question."""
    doc = _commit(
        "a" * 40,
        "Enable FSDP & Deepspeed + FP8 (#2983)",
        (
            "docs/low_precision.md",
            "-By default, FP8 mixed precision uses MS-AMP. To specify it yourself:\n"
            "+By default, FP8 mixed precision uses MS-AMP. To specify it yourself or in your config yaml:\n",
        ),
    )
    question = "Which PR made fp8 the default mixed precision?"
    answer = ExtractiveAnswerer().answer(question, _ranked(doc))
    assert answer.abstained and answer.answer.startswith(NO_SUCH_CHANGE), answer.answer
    assert "no commit sets the default of fp8" in answer.answer

    made = _commit(
        "b" * 40,
        "Make fp8 the default mixed precision (#3001)",
        ("src/config.py", '-    mixed_precision: str = "no"\n+    mixed_precision: str = "fp8"\n'),
    )
    answer = ExtractiveAnswerer().answer(question, _ranked(doc, made))
    assert not answer.abstained and answer.answer.startswith("PR #3001"), answer.answer


def test_a_default_claim_is_supported_by_an_edited_default_value() -> None:
    """Neither subject says "default": the edit of the field's default value is what supports the claim, and an
    example that passes `use_dora=True` to a call sets no default."""
    example = _commit(
        "c" * 40,
        "DOC DoRA example script (#1885)",
        ("examples/dora.py", "-config = LoraConfig(r=8)\n+config = LoraConfig(r=8, use_dora=True)\n"),
    )
    switch = _commit(
        "d" * 40,
        "Switch DoRA on for new configs (#1999)",
        ("src/peft/config.py", "-    use_dora: bool = False\n+    use_dora: bool = True\n"),
    )
    question = "When did use_dora become True by default?"
    assert ExtractiveAnswerer().answer(question, _ranked(example)).abstained
    answer = ExtractiveAnswerer().answer(question, _ranked(example, switch))
    assert not answer.abstained and "commit ddddddd (PR #1999)" in answer.answer.splitlines()[0], answer.answer


def test_a_removal_claim_is_checked_against_the_commits_whole_diff() -> None:
    """Retrieval returned the part of the rewrite that removes DeepSpeed lines; the rest of its diff adds DeepSpeed
    lines back, so it dropped nothing. Without the whole diff the same hits would be answered."""
    sha = "e" * 40
    commit, removed_part, added_part = _commit(
        sha,
        "DeepSpeed Revamp (#405)",
        ("src/accelerate/deepspeed.py", "-class DeepSpeedEngineWrapper(DeepSpeedEngine):\n-    drop_last = True\n"),
        ("src/accelerate/utils.py", "+class DeepSpeedEngineWrapper:\n+    engine: deepspeed.DeepSpeedEngine\n"),
    )
    hits = [Hit(chunk=commit, score=2.0, dense=0.5), Hit(chunk=removed_part, score=1.9, dense=0.5)]
    question = "When did accelerate drop DeepSpeed support?"
    assert not ExtractiveAnswerer().answer(question, hits).abstained  # the guard: the hits alone look like a removal
    whole = ExtractiveAnswerer(diffs=lambda c: [removed_part, added_part] if c == sha else [])
    answer = whole.answer(question, hits)
    assert answer.abstained and "no commit removes deepspeed" in answer.answer, answer.answer


def test_an_addition_claim_needs_its_rarest_term_beside_another() -> None:
    """Every word of the question occurs in the retrieved commits, and the commit adding "tensorflow" is supported
    well above the threshold by them, but it adds it to a list of test extras, nowhere near a backend or a launch
    command; a commit that adds the backend answers."""
    extras = _commit(
        "f" * 40,
        "Add logging capabilities (#293)",
        ("setup.py", '+extras["test_trackers"] = ["wandb", "comet-ml", "tensorflow"]\n'),
        ("src/accelerate/tracking.py", "+def log(values):\n+    launch_tracker(values)\n"),
    )
    qaic = _commit(
        "8" * 40,
        "Add the qaic backend (#3926)",
        ("src/accelerate/state.py", '+        backend = "qaic"\n'),
    )
    question = "Who added a TensorFlow backend to accelerate launch?"
    hits = _ranked(extras, qaic)
    terms = distinctive(key_terms(question), [ev.text() for ev in group_commits(hits)])
    assert support(terms, group_commits(hits)[0].text()) >= SUPPORT_THRESHOLD  # the guard: words alone would answer
    answer = ExtractiveAnswerer().answer(question, hits)
    assert answer.abstained and "no commit adds tensorflow" in answer.answer, answer.answer
    backend = _commit(
        "9" * 40,
        "Add a TensorFlow backend to accelerate launch (#4242)",
        ("src/accelerate/launch.py", '+    if args.backend == "tensorflow":\n+        return run_tf(args)\n'),
    )
    answer = ExtractiveAnswerer().answer(question, _ranked(extras, qaic, backend))
    assert not answer.abstained and "commit 9999999 (PR #4242)" in answer.answer.splitlines()[0], answer.answer
