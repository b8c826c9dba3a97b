"""The CI replay reads ci.yml as GitHub does: jobs, steps, env, `if:` conditions, expressions and action mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.ci.replay import (
    Context,
    ReplayError,
    _parse_env_file,
    cache_members,
    choose_jobs,
    condition,
    describe,
    local_action,
    main,
    parse_skips,
    parse_workflow,
    shell_command,
    substitute,
)

REPO = Path(__file__).resolve().parents[2]
CI = REPO / ".github" / "workflows" / "ci.yml"


def _context(event: str = "pull_request", failed: bool = False) -> Context:
    return Context({"github": {"event_name": event, "workspace": "/home/r/work/x/x"}, "env": {}}, failed=failed)


def test_ci_yml_parses_into_jobs_with_their_steps_env_and_needs() -> None:
    workflow = parse_workflow(CI.read_text())
    assert list(workflow.jobs)[:2] == ["lint", "test"]
    assert workflow.env["TQA_ENVIRONMENT"] == "local"
    test = workflow.jobs["test"]
    runs = [s.run.strip() for s in test.steps if s.run]
    assert runs.index("make setup") < runs.index("make test-unit") < runs.index("make test")
    make_test = next(s for s in test.steps if s.run and s.run.strip() == "make test")
    assert make_test.env == {"TQA_ROOT_TESTS_ELSEWHERE": "1"}
    assert test.timeout_minutes == 60
    evaluation = workflow.jobs["eval"]
    assert evaluation.needs == ["test"]
    assert evaluation.env["TQA_DATA_DIR"] == "${{ github.workspace }}/.tqa-ci"
    # Every job starts by checking out the commit and setting up Python.
    for job in workflow.jobs.values():
        assert [s.uses.split("@")[0] for s in job.steps[:2]] == ["actions/checkout", "actions/setup-python"]


def test_every_action_ci_yml_uses_has_a_local_equivalent() -> None:
    workflow = parse_workflow(CI.read_text())
    kinds = {local_action(s.uses, s.with_).kind for job in workflow.jobs.values() for s in job.steps if s.uses}
    assert kinds == {"checkout", "setup-python", "setup-go", "cache"}


def test_actions_map_to_what_they_do_here() -> None:
    python = local_action("actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065", {"python-version": "3.11"})
    assert python.kind == "setup-python" and "/usr/bin/python3.11" in python.summary
    go = local_action("actions/setup-go@d35c59abb061a4a6fb18e82ac0862c26744d6ab5", {"go-version": "1.24"})
    assert go.kind == "setup-go" and "at least 1.24" in go.summary
    cache = local_action("actions/cache@v4", {"path": "~/.cache/tqa-tools", "key": "k"})
    assert cache.kind == "cache" and "~/.cache/tqa-tools" in cache.summary
    assert "whole history" in local_action("actions/checkout@v4", {"fetch-depth": "0"}).summary
    with pytest.raises(ReplayError, match="no local equivalent"):
        local_action("docker/build-push-action@v6", {})
    with pytest.raises(ReplayError, match="minor version"):
        local_action("actions/setup-python@v5", {"python-version": "3.x"})


def test_the_eval_job_runs_on_pull_requests_only() -> None:
    job = parse_workflow(CI.read_text()).jobs["eval"]
    assert condition(job.if_, _context("pull_request")) is True
    assert condition(job.if_, _context("push")) is False
    listing = describe(parse_workflow(CI.read_text()), ["eval"], "push")
    assert "skipped on a push event" in listing


def test_conditions_follow_github_status_rules() -> None:
    assert condition(None, _context()) is True
    assert condition(None, _context(failed=True)) is False  # a failed step skips the rest
    assert condition("always()", _context(failed=True)) is True
    assert condition("${{ failure() }}", _context(failed=True)) is True
    assert condition("failure()", _context()) is False
    # Without a status function GitHub adds success(): true comparison, but a step failed.
    assert condition("github.event_name == 'pull_request'", _context(failed=True)) is False
    assert condition("github.event_name != 'push' && !(github.event_name == 'PUSH')", _context()) is True
    assert condition("github.event_name == 'push' || github.event_name == 'schedule'", _context()) is False


def test_expressions_are_substituted_and_unknown_contexts_refused() -> None:
    context = _context()
    assert substitute("${{ github.workspace }}/.tqa-ci", context) == "/home/r/work/x/x/.tqa-ci"
    assert substitute("e=${{ github.event_name }} n=${{ github.nothing }}", context) == "e=pull_request n="
    with pytest.raises(ReplayError, match="context the replay does not provide"):
        substitute("${{ vault.token }}", context)
    with pytest.raises(ReplayError, match="does not provide"):
        substitute("${{ toJSON(github) }}", context)
    with pytest.raises(ReplayError, match="needs the workspace"):
        substitute("${{ hashFiles('ml/settings.py') }}", context)
    context.hash_files = lambda patterns: f"h:{','.join(patterns)}"
    assert substitute("weaviate-${{ hashFiles('ml/settings.py') }}", context) == "weaviate-h:ml/settings.py"


def test_step_files_and_shells_as_github_writes_and_runs_them() -> None:
    text = "A=1\nB<<EOF\nline 1\nline=2\nEOF\nC=x=y\n"
    assert _parse_env_file(text) == {"A": "1", "B": "line 1\nline=2", "C": "x=y"}
    assert shell_command(None, "/t/s.sh") == ["bash", "-e", "/t/s.sh"]
    assert shell_command("bash", "/t/s.sh") == ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/t/s.sh"]
    assert shell_command("bash -x {0}", "/t/s.sh") == ["bash", "-x", "/t/s.sh"]
    with pytest.raises(ReplayError):
        shell_command("pwsh", "/t/s.ps1")


def test_job_choice_and_malformed_steps_are_one_sentence_errors() -> None:
    workflow = parse_workflow(CI.read_text())
    assert choose_jobs(workflow, "test,lint") == ["lint", "test"]  # workflow order
    with pytest.raises(ReplayError, match="no job deploy"):
        choose_jobs(workflow, "lint,deploy")
    assert parse_skips(workflow, ["test:7"]) == ["test:7"]
    for wrong in ("test:9", "test:0", "lint", "deploy:1"):
        with pytest.raises(ReplayError, match="names no step"):
            parse_skips(workflow, [wrong])
    with pytest.raises(ReplayError, match="exactly one of `run` and `uses`"):
        parse_workflow("jobs:\n  a:\n    runs-on: x\n    steps:\n      - name: nothing\n")
    with pytest.raises(ReplayError, match="matrix"):
        parse_workflow("jobs:\n  a:\n    strategy: {matrix: {py: [1]}}\n    steps: []\n")


def test_list_prints_each_step_without_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workflow", str(CI), "--jobs", "infra", "--list"]) == 0
    out = capsys.readouterr().out
    assert "infra (ubuntu-24.04, timeout 30 min)" in out
    assert 'bash: sudo -E env "PATH=$PATH" make infra-check' in out
    assert "~/.cache/tqa-tools, !~/.cache/tqa-tools/*.d, !~/.cache/tqa-tools/.#*, cold unless --warm-cache" in out
    assert main(["--workflow", str(CI), "--jobs", "nope", "--list"]) == 2
    assert "no job nope" in capsys.readouterr().err


def test_cache_members_follow_the_paths_and_their_exclusions(tmp_path: Path) -> None:
    tools = tmp_path / ".cache" / "tqa-tools"
    (tools / "bin").mkdir(parents=True)
    (tools / "bin" / "tofu").write_text("x")
    (tools / "rootfs.tar").write_text("x")
    (tools / "rootfs.d" / "etc").mkdir(parents=True)
    (tools / "rootfs.d" / "etc" / "shadow").write_text("x")
    (tools / ".#rootfs.d.lck").write_text("")
    everything = cache_members(tmp_path, "~/.cache/tqa-tools")
    assert ".cache/tqa-tools/rootfs.d/etc/shadow" in everything and ".cache/tqa-tools/.#rootfs.d.lck" in everything
    kept = cache_members(tmp_path, "~/.cache/tqa-tools\n!~/.cache/tqa-tools/*.d\n!~/.cache/tqa-tools/.#*\n")
    assert sorted(kept) == [
        ".cache/tqa-tools",
        ".cache/tqa-tools/bin",
        ".cache/tqa-tools/bin/tofu",
        ".cache/tqa-tools/rootfs.tar",
    ]
    assert cache_members(tmp_path, "~/.cache/missing") == []


def test_ci_yml_caches_no_root_only_rootfs() -> None:
    """The infra job unpacks a rootfs as root beside its tools; its cache must leave it out or the save fails."""
    infra = parse_workflow(CI.read_text()).jobs["infra"]
    caches = [s for s in infra.steps if s.uses and s.uses.startswith("actions/cache@")]
    (cache,) = [s for s in caches if "tqa-tools" in s.with_["path"]]
    assert "!~/.cache/tqa-tools/*.d" in cache.with_["path"].splitlines()
    # The role test installs Weaviate from the controller: the job provides the binary before the root step.
    runs = [s.run.strip() for s in infra.steps if s.run]
    assert runs.index("make weaviate") < next(i for i, r in enumerate(runs) if "make infra-check" in r)
