"""Replays jobs of a GitHub workflow on this machine the way a GitHub-hosted runner runs them.

Each chosen job gets what a runner gives it and nothing more: a fresh unprivileged user (created with `useradd`, with
password-less `sudo` through `/etc/sudoers.d`, as the runner's user has), a workspace in that user's home holding a
shallow clone of the commit, the workflow's, job's and step's `env:`, and each `run:` step in order under bash as that
user. `uses:` steps become what they do here, and say so: `actions/checkout` fetches the commit into the workspace,
`actions/setup-python` and `actions/setup-go` put this machine's interpreter and toolchain on the PATH (after checking
the version asked for), `actions/cache` restores nothing (a cold cache) unless `--warm-cache` copies the path from the
invoking user's home, as a cache hit would. Any other action fails its step: a replay that skipped it would be green
for the wrong reason. Per step it reports pass/fail and seconds; per job, the logs and what the job left running.

A step that fails here because the workflow is wrong for GitHub (a root step without sudo, a path under root's home, a
tool the runner lacks) is a finding about the workflow: fix the workflow, not the replay. Runs as root (it creates
users); `python -m ops.ci.replay --list` only parses and prints, as anyone. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_WORKFLOW = Path(".github/workflows/ci.yml")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Settings this machine needs to reach its package registries (a runner has its own network); nothing else of the
# invoking environment reaches a step.
REGISTRY_ENV = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


class ReplayError(Exception):
    """A workflow the replay cannot run as written, or a machine it cannot run on; the message is one sentence."""


# ---------------------------------------------------------------------------------------------------------------
# The workflow: jobs and steps as GitHub reads them.


@dataclass
class Step:
    index: int
    name: str
    run: str | None = None
    uses: str | None = None
    with_: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    if_: str | None = None
    id: str | None = None
    shell: str | None = None
    working_directory: str | None = None
    continue_on_error: bool = False
    timeout_minutes: float | None = None


@dataclass
class Job:
    id: str
    runs_on: str
    steps: list[Step]
    env: dict[str, str] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    if_: str | None = None
    timeout_minutes: float = 360
    shell: str | None = None
    working_directory: str | None = None


@dataclass
class Workflow:
    name: str
    env: dict[str, str]
    jobs: dict[str, Job]


def _strings(mapping: Any, where: str) -> dict[str, str]:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ReplayError(f"{where} must be a mapping.")
    return {str(k): _scalar(v) for k, v in mapping.items()}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _step_name(step: dict[str, Any]) -> str:
    if step.get("name"):
        return str(step["name"])
    if step.get("uses"):
        return str(step["uses"]).split("@")[0]
    first = next((line for line in str(step.get("run", "")).splitlines() if line.strip()), "")
    return f"Run {first.strip()}"


def parse_workflow(text: str) -> Workflow:
    """The jobs of a workflow file, in file order; a step that is neither `run` nor `uses` is a `ReplayError`."""
    data = yaml.safe_load(text) or {}
    defaults = (data.get("defaults") or {}).get("run") or {}
    jobs: dict[str, Job] = {}
    for job_id, raw in (data.get("jobs") or {}).items():
        if "uses" in raw:
            raise ReplayError(f"job {job_id} calls a reusable workflow, which the replay does not run.")
        if "matrix" in (raw.get("strategy") or {}):
            raise ReplayError(f"job {job_id} has a matrix, which the replay does not expand.")
        job_defaults = (raw.get("defaults") or {}).get("run") or {}
        steps = []
        for n, step in enumerate(raw.get("steps") or [], 1):
            if ("run" in step) == ("uses" in step):
                raise ReplayError(f"job {job_id} step {n} must have exactly one of `run` and `uses`.")
            steps.append(
                Step(
                    index=n,
                    name=_step_name(step),
                    run=step.get("run"),
                    uses=step.get("uses"),
                    with_=_strings(step.get("with"), f"job {job_id} step {n} `with`"),
                    env=_strings(step.get("env"), f"job {job_id} step {n} `env`"),
                    if_=None if step.get("if") is None else _scalar(step["if"]),
                    id=step.get("id"),
                    shell=step.get("shell"),
                    working_directory=step.get("working-directory"),
                    continue_on_error=bool(step.get("continue-on-error", False)),
                    timeout_minutes=step.get("timeout-minutes"),
                )
            )
        needs = raw.get("needs") or []
        jobs[str(job_id)] = Job(
            id=str(job_id),
            runs_on=_scalar(raw.get("runs-on")),
            steps=steps,
            env=_strings(raw.get("env"), f"job {job_id} `env`"),
            needs=[needs] if isinstance(needs, str) else list(needs),
            if_=None if raw.get("if") is None else _scalar(raw["if"]),
            timeout_minutes=float(raw.get("timeout-minutes", 360)),
            shell=job_defaults.get("shell", defaults.get("shell")),
            working_directory=job_defaults.get("working-directory", defaults.get("working-directory")),
        )
    return Workflow(name=str(data.get("name", "")), env=_strings(data.get("env"), "workflow `env`"), jobs=jobs)


# ---------------------------------------------------------------------------------------------------------------
# Expressions: `${{ ... }}` in strings and `if:` conditions, for the subset the workflows use.

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[()!,])"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[\w*-]+)*))"
)


@dataclass
class Context:
    """What expressions read: contexts (`github`, `env`, `runner`, `steps`, `needs`, ...) and the job's status."""

    values: dict[str, Any]
    failed: bool = False
    cancelled: bool = False
    hash_files: Callable[[list[str]], str] | None = None

    def lookup(self, name: str) -> Any:
        root, *rest = name.split(".")
        if root not in self.values:
            raise ReplayError(f"the expression names `{name}`, a context the replay does not provide.")
        value: Any = self.values[root]
        for key in rest:
            value = value.get(key, "") if isinstance(value, dict) else ""
        return value


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expression = expression.strip()
    while pos < len(expression):
        found = _TOKEN.match(expression, pos)
        if not found or found.end() == pos:
            raise ReplayError(f"cannot read the expression `{expression}` at `{expression[pos:]}`.")
        kind = found.lastgroup or ""
        out.append((kind, found.group(kind)))
        pos = found.end()
    return out


class _Parser:
    def __init__(self, expression: str, context: Context) -> None:
        self.expression, self.context = expression, context
        self.tokens, self.pos = _tokens(expression), 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ReplayError(f"cannot read the expression `{self.expression}`: expected `{value or 'more'}`.")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ReplayError(f"cannot read the expression `{self.expression}` at `{self.peek()[1]}`.")  # type: ignore[index]
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.unary()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.unary()
            value = right if _truthy(value) else value
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truthy(self.unary())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        token = self.peek()
        if token in (("op", "=="), ("op", "!=")):
            self.take()
            equal = _loose(left) == _loose(self.primary())
            return equal if token[1] == "==" else not equal  # type: ignore[index]
        return left

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind == "op" and text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "name":
            if self.peek() == ("op", "("):
                return self.call(text)
            literals = {"true": True, "false": False, "null": None}
            return literals[text] if text in literals else self.context.lookup(text)
        raise ReplayError(f"cannot read the expression `{self.expression}` at `{text}`.")

    def call(self, function: str) -> Any:
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        c = self.context
        if function == "always":
            return True
        if function == "success":
            return not c.failed and not c.cancelled
        if function == "failure":
            return c.failed
        if function == "cancelled":
            return c.cancelled
        if function == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_loose(item) == _loose(needle) for item in haystack)
            return str(needle).lower() in str(haystack).lower()
        if function == "startsWith":
            return str(args[0]).lower().startswith(str(args[1]).lower())
        if function == "endsWith":
            return str(args[0]).lower().endswith(str(args[1]).lower())
        if function == "hashFiles":
            if c.hash_files is None:
                raise ReplayError("hashFiles() needs the workspace, which this expression has none of.")
            return c.hash_files([str(a) for a in args])
        raise ReplayError(f"the expression calls `{function}()`, which the replay does not provide.")


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "")


def _loose(value: Any) -> Any:
    """GitHub compares strings case-insensitively."""
    return value.lower() if isinstance(value, str) else value


def evaluate(expression: str, context: Context) -> Any:
    """The value of one expression (the text inside `${{ }}`)."""
    return _Parser(expression, context).parse()


def condition(text: str | None, context: Context) -> bool:
    """Whether an `if:` holds; without a status function GitHub reads it as `success() && (...)`."""
    if text is None or not text.strip():
        return not context.failed and not context.cancelled
    inner = text.strip()
    if inner.startswith("${{") and inner.endswith("}}"):
        inner = inner[3:-2]
    calls_status = any(re.search(rf"\b{name}\s*\(", inner) for name in STATUS_FUNCTIONS)
    value = _truthy(evaluate(inner, context))
    return value if calls_status else value and not context.failed and not context.cancelled


def substitute(text: str, context: Context) -> str:
    """`text` with every `${{ expression }}` replaced by its value, as GitHub does before a step runs."""

    def one(found: re.Match[str]) -> str:
        value = evaluate(found.group(1), context)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return "" if value is None else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", one, text, flags=re.S)


# ---------------------------------------------------------------------------------------------------------------
# Actions: what each `uses:` does on this machine.


@dataclass(frozen=True)
class LocalAction:
    kind: str  # checkout | setup-python | setup-go | cache
    action: str
    summary: str


def local_action(uses: str, with_: dict[str, str]) -> LocalAction:
    """What a `uses:` step becomes here; an action with no local equivalent is a `ReplayError`."""
    action, _, ref = uses.partition("@")
    short = f"{action}@{ref[:12]}" if ref else action
    if action == "actions/checkout":
        depth = with_.get("fetch-depth", "1")
        what = "the whole history" if depth == "0" else f"depth {depth}"
        return LocalAction("checkout", action, f"{short}: fetch the commit ({what}) into the workspace")
    if action == "actions/setup-python":
        version = with_.get("python-version", "")
        if not re.fullmatch(r"3\.\d+", version):
            raise ReplayError(f"{short}: python-version `{version}` must name a minor version such as 3.11.")
        return LocalAction("setup-python", action, f"{short}: this machine's /usr/bin/python{version} first on PATH")
    if action == "actions/setup-go":
        version = with_.get("go-version", "")
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
            raise ReplayError(f"{short}: go-version `{version}` must be a version such as 1.24.")
        return LocalAction("setup-go", action, f"{short}: this machine's Go (at least {version}) first on PATH")
    if action in ("actions/cache", "actions/cache/restore"):
        path = ", ".join(p.strip() for p in with_.get("path", "").splitlines() if p.strip())
        return LocalAction("cache", action, f"{short}: {path}, cold unless --warm-cache; save tried after the job")
    raise ReplayError(f"{short} has no local equivalent in the replay; map it in ops/ci/replay.py or run it by hand.")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# ---------------------------------------------------------------------------------------------------------------
# Running: the runner user, the steps, the report.


@dataclass
class StepResult:
    job: str
    index: int
    name: str
    status: str  # pass | fail | skipped
    seconds: float
    detail: str = ""
    log: str = ""


@dataclass
class JobResult:
    job: str
    status: str  # pass | fail | skipped
    seconds: float
    steps: list[StepResult]
    detail: str = ""


def _parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines and KEY<<DELIMITER blocks, as steps write to $GITHUB_ENV and $GITHUB_OUTPUT."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            block = []
            i += 1
            while i < len(lines) and lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            values[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
        i += 1
    return values


def shell_command(shell: str | None, script: str) -> list[str]:
    """The command GitHub runs a `run:` script with on Linux."""
    if shell is None:
        return ["bash", "-e", script]
    builtin = {
        "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", script],
        "sh": ["sh", "-e", script],
        "python": ["python", script],
    }
    if shell in builtin:
        return builtin[shell]
    if "{0}" not in shell:
        raise ReplayError(f"shell `{shell}` is neither bash, sh, python nor a command with {{0}}.")
    return [script if word == "{0}" else word for word in shlex.split(shell)]


class Runner:
    """A fresh unprivileged user with password-less sudo, as a GitHub-hosted runner's, removed at the end."""

    def __init__(self, job_id: str, keep: bool) -> None:
        self.name = f"ci-{re.sub(r'[^a-z0-9]', '', job_id.lower())[:12]}-{uuid.uuid4().hex[:6]}"
        self.keep = keep
        self.home = Path("/home") / self.name
        self.sudoers = Path("/etc/sudoers.d") / self.name
        self.uid = -1
        self.gid = -1

    def create(self) -> None:
        if shutil.which("sudo") is None:
            print("  runner: installing sudo (Debian package), which every GitHub runner has", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "install", "-y", "-qq", "sudo"], check=True, env=env, stdout=subprocess.DEVNULL)
        useradd = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", self.name]
        made = subprocess.run(useradd, capture_output=True, text=True)
        if made.returncode != 0:
            raise ReplayError(f"useradd {self.name} failed: {made.stderr.strip()}")
        self.sudoers.parent.mkdir(mode=0o750, exist_ok=True)
        partial = self.sudoers.with_name(f".{self.name}.partial")
        partial.write_text(f"{self.name} ALL=(ALL) NOPASSWD:ALL\n")
        partial.chmod(0o440)
        subprocess.run(["visudo", "-cqf", str(partial)], check=True)
        partial.rename(self.sudoers)
        out = subprocess.run(["id", "-u", self.name], check=True, capture_output=True, text=True).stdout
        self.uid = int(out)
        self.gid = int(subprocess.run(["id", "-g", self.name], check=True, capture_output=True, text=True).stdout)

    def as_user(self, env: dict[str, str], argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]

    def own(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)

    def processes(self, marker: str) -> list[int]:
        """Processes the job left: the user's own, and those it started through sudo (they carry the marker)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                status = (entry / "status").read_text()
                uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
                environ = (entry / "environ").read_bytes()
            except (OSError, AttributeError):
                continue
            if uid == self.uid or marker.encode() in environ:
                found.append(int(entry.name))
        return found

    def remove(self, marker: str) -> str:
        """Ends what the job left running (by pid) and removes the user; returns what it found, for the report."""
        left = self.processes(marker)
        notes = []
        if left:
            names = sorted({_comm(pid) for pid in left})
            notes.append(f"{len(left)} processes left running ({', '.join(names)}), ended")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in left:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in left):
                    time.sleep(0.2)
        if self.keep:
            notes.append(f"user {self.name} and {self.home} kept (--keep)")
            return "; ".join(notes)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        inside = [m for m in mounts if m == str(self.home) or m.startswith(f"{self.home}/")]
        if inside:
            notes.append(f"{self.home} kept: still mounted there: {', '.join(inside)}")
            return "; ".join(notes)
        self.sudoers.unlink(missing_ok=True)
        # The home first: `userdel --remove` would hold the lock on /etc/passwd for as long as that takes.
        shutil.rmtree(self.home, ignore_errors=True)
        gone = subprocess.run(["userdel", self.name], capture_output=True, text=True)
        if gone.returncode != 0:
            notes.append(f"userdel {self.name} failed: {gone.stderr.strip()}")
        return "; ".join(notes)


class Replay:
    """Runs chosen jobs of one workflow; prints each step as it ends and returns the results."""

    def __init__(
        self,
        workflow: Workflow,
        source: Path,
        sha: str,
        event: str,
        logs: Path,
        repository: str,
        warm_cache: bool = False,
        keep: bool = False,
        skip: set[str] | None = None,
    ) -> None:
        self.workflow, self.source, self.sha, self.event = workflow, source, sha, event
        self.logs, self.repository, self.warm_cache, self.keep = logs, repository, warm_cache, keep
        self.skip = skip or set()
        self.caches: list[dict[str, str]] = []

    def run(self, job_ids: list[str]) -> list[JobResult]:
        results: dict[str, JobResult] = {}
        for job_id in job_ids:
            job = self.workflow.jobs[job_id]
            failed_needs = [n for n in job.needs if n in results and results[n].status != "pass"]
            if failed_needs:
                why = f"needs {', '.join(failed_needs)}, which did not pass"
                results[job_id] = JobResult(job_id, "skipped", 0, [], why)
            else:
                results[job_id] = self.run_job(job, results)
            print(f"== job {job_id}: {results[job_id].status} in {results[job_id].seconds:.0f} s", flush=True)
        return list(results.values())

    def run_job(self, job: Job, done: dict[str, JobResult]) -> JobResult:
        name = self.repository.split("/")[-1]
        base = {
            "github": {
                "event_name": self.event,
                "sha": self.sha,
                "ref": "refs/heads/main",
                "repository": self.repository,
                "workflow": self.workflow.name,
                "job": job.id,
                "run_id": "1",
            },
            "runner": {"os": "Linux", "arch": "X64"},
            "env": {},
            "steps": {},
            "needs": {n: {"result": "success" if done[n].status == "pass" else "failure"} for n in done},
            "inputs": {},
            "vars": {},
            "secrets": {},
            "matrix": {},
        }
        context = Context(base)
        if not condition(job.if_, context):
            return JobResult(job.id, "skipped", 0, [], f"`if: {job.if_}` is false for a {self.event} event")
        unreplayed = [n for n in job.needs if n not in done]
        print(f"== job {job.id} ({job.runs_on}, timeout {job.timeout_minutes:g} min)", flush=True)
        if unreplayed:
            print(f"   needs {', '.join(unreplayed)}: not replayed in this run, taken as passed", flush=True)
        self.caches = []
        runner = Runner(job.id, self.keep)
        runner.create()
        marker = f"TQA_CI_REPLAY={runner.name}"
        workspace = runner.home / "work" / name / name
        temp = runner.home / "work" / "_temp"
        tool_cache = runner.home / "work" / "_tool"
        for path in (workspace, temp, tool_cache):
            path.mkdir(parents=True, exist_ok=True)
        for path in (runner.home / "work", workspace.parent, workspace, temp, tool_cache):
            runner.own(path)
        base["github"]["workspace"] = str(workspace)
        base["runner"].update(temp=str(temp), tool_cache=str(tool_cache))
        context.hash_files = lambda patterns: _hash_files(workspace, patterns)
        job_logs = self.logs / job.id
        job_logs.mkdir(parents=True, exist_ok=True)
        print(f"   runner: user {runner.name} (uid {runner.uid}, password-less sudo); workspace {workspace}")
        print(f"   logs: {job_logs}", flush=True)

        env: dict[str, str] = {}
        for key, value in self.workflow.env.items():
            env[key] = substitute(value, context)
        base["env"] = dict(env)
        for key, value in job.env.items():
            env[key] = substitute(value, context)
        base["env"] = dict(env)
        added_env: dict[str, str] = {}
        path_dirs: list[str] = []
        machine_path = [str(Path(p).parent) for p in (shutil.which("go"),) if p]
        registry = {k: os.environ[k] for k in REGISTRY_ENV if k in os.environ}
        if registry:
            print(f"   this machine's registry settings passed on: {', '.join(sorted(registry))}", flush=True)
        if machine_path:
            print(f"   image tools on PATH (a GitHub image has Go too): {', '.join(machine_path)}", flush=True)
        deadline = time.monotonic() + job.timeout_minutes * 60
        started = time.monotonic()
        steps: list[StepResult] = []
        for step in job.steps:
            base["env"] = {**env, **added_env}
            if not condition(step.if_, context):
                steps.append(StepResult(job.id, step.index, step.name, "skipped", 0, "`if:` is false"))
                self._print_step(steps[-1])
                continue
            if f"{job.id}:{step.index}" in self.skip:
                steps.append(StepResult(job.id, step.index, step.name, "skipped", 0, "--skip: not replayed"))
                self._print_step(steps[-1])
                continue
            if time.monotonic() >= deadline:
                context.cancelled = True
                steps.append(StepResult(job.id, step.index, step.name, "skipped", 0, "job timeout reached"))
                self._print_step(steps[-1])
                continue
            step_env = {k: substitute(v, context) for k, v in step.env.items()}
            files = {k: temp / f"{k.lower()}-{step.index}" for k in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT")}
            summary = temp / f"step-summary-{step.index}.md"
            for path in (*files.values(), summary):
                path.write_text("")
                runner.own(path)
            run_env = {
                "HOME": str(runner.home),
                "USER": runner.name,
                "LOGNAME": runner.name,
                "SHELL": "/bin/bash",
                "LANG": "C.UTF-8",
                "PATH": ":".join([*reversed(path_dirs), *machine_path, BASE_PATH]),
                **registry,
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_EVENT_NAME": self.event,
                "GITHUB_SHA": self.sha,
                "GITHUB_REF": "refs/heads/main",
                "GITHUB_REPOSITORY": self.repository,
                "GITHUB_WORKFLOW": self.workflow.name,
                "GITHUB_JOB": job.id,
                "GITHUB_STEP_SUMMARY": str(summary),
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "RUNNER_TEMP": str(temp),
                "RUNNER_TOOL_CACHE": str(tool_cache),
                **{k: str(v) for k, v in files.items()},
                **env,
                **added_env,
                **step_env,
                "TQA_CI_REPLAY": runner.name,
            }
            log = job_logs / f"{step.index:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', step.name).strip('-')[:40]}.log"
            t0 = time.monotonic()
            limit = deadline - t0
            if step.timeout_minutes is not None:
                limit = min(limit, float(step.timeout_minutes) * 60)
            try:
                if step.uses:
                    ok, detail = self._action(step, context, runner, run_env, workspace, tool_cache, path_dirs, log)
                else:
                    ok, detail = self._run(step, job, context, runner, run_env, workspace, temp, log, limit)
            except ReplayError as exc:
                ok, detail = False, str(exc)
            seconds = time.monotonic() - t0
            added_env.update(_parse_env_file(files["GITHUB_ENV"].read_text()))
            path_dirs.extend(line.strip() for line in files["GITHUB_PATH"].read_text().splitlines() if line.strip())
            if step.id:
                outputs = _parse_env_file(files["GITHUB_OUTPUT"].read_text())
                base["steps"][step.id] = {"outputs": outputs, "outcome": "success" if ok else "failure"}
            if summary.read_text().strip():
                print(f"   step summary ({summary}):\n" + _indent(summary.read_text()), flush=True)
            if not ok and not step.continue_on_error:
                context.failed = True
            steps.append(StepResult(job.id, step.index, step.name, "pass" if ok else "fail", seconds, detail, str(log)))
            self._print_step(steps[-1])
            if not ok and log.exists():
                print(_indent("\n".join(log.read_text(errors="replace").splitlines()[-40:])), flush=True)
        for note in self.save_caches(runner, {"HOME": str(runner.home), "PATH": BASE_PATH}):
            print(f"   post-job {note}", flush=True)
            status = "warn" if "FAIL" in note else "pass"
            steps.append(StepResult(job.id, len(job.steps) + 1, note.split(":")[0], status, 0, note))
        seconds = time.monotonic() - started
        removed = time.monotonic()
        cleanup = runner.remove(marker)
        cleanup = "; ".join(filter(None, [cleanup, f"runner removed in {time.monotonic() - removed:.0f} s"]))
        status = "fail" if context.failed or context.cancelled else "pass"
        return JobResult(job.id, status, seconds, steps, cleanup)

    def _print_step(self, result: StepResult) -> None:
        detail = f"  ({result.detail})" if result.detail else ""
        print(f"   [{result.index}] {result.status:7} {result.seconds:7.1f} s  {result.name}{detail}", flush=True)

    def _run(
        self,
        step: Step,
        job: Job,
        context: Context,
        runner: Runner,
        env: dict[str, str],
        workspace: Path,
        temp: Path,
        log: Path,
        limit: float,
    ) -> tuple[bool, str]:
        script = temp / f"step-{step.index}.sh"
        script.write_text(substitute(step.run or "", context) + "\n")
        runner.own(script)
        where = step.working_directory or job.working_directory
        cwd = workspace / substitute(where, context) if where else workspace
        argv = runner.as_user(env, shell_command(step.shell or job.shell, str(script)))
        with log.open("wb") as out:
            out.write(f"$ {step.run}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=max(limit, 1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                context.cancelled = True
                return False, f"timed out after {limit / 60:.0f} min"
        return code == 0, "" if code == 0 else f"exit status {code}"

    def _action(
        self,
        step: Step,
        context: Context,
        runner: Runner,
        env: dict[str, str],
        workspace: Path,
        tool_cache: Path,
        path_dirs: list[str],
        log: Path,
    ) -> tuple[bool, str]:
        with_ = {k: substitute(v, context) for k, v in step.with_.items()}
        action = local_action(step.uses or "", with_)
        print(f"   [{step.index}] uses {action.summary}", flush=True)
        if action.kind == "checkout":
            depth = with_.get("fetch-depth", "1")
            upload_pack = f"git -c safe.directory={self.source / '.git'} upload-pack"
            fetch = ["git", "fetch", "-q", "--no-tags", f"--upload-pack={upload_pack}", f"file://{self.source}"]
            fetch.append(self.sha)
            if depth != "0":
                fetch.insert(3, f"--depth={depth}")
            script = " && ".join(
                [
                    "git init -q .",
                    shlex.join(fetch),
                    "git checkout -q --detach FETCH_HEAD",
                    "git log --oneline -1",
                ]
            )
            done = subprocess.run(
                runner.as_user(env, ["bash", "-ec", script]), cwd=workspace, capture_output=True, text=True
            )
            log.write_text(done.stdout + done.stderr)
            return done.returncode == 0, done.stdout.strip() or done.stderr.strip()[-300:]
        if action.kind == "setup-python":
            version = with_["python-version"]
            python = Path(f"/usr/bin/python{version}")
            if not python.exists():
                return False, f"{python} is missing: install Debian's python{version} or ask for one this machine has"
            bin_dir = tool_cache / "Python" / version / "x64" / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            for link in ("python", "python3", f"python{version}"):
                target = bin_dir / link
                target.unlink(missing_ok=True)
                target.symlink_to(python)
            _own_tree(runner, tool_cache)
            path_dirs.append(str(bin_dir))
            out = subprocess.run([str(python), "--version"], capture_output=True, text=True).stdout.strip()
            log.write_text(f"{bin_dir}: {out}\n")
            return True, out
        if action.kind == "setup-go":
            go = shutil.which("go") or "/usr/local/go/bin/go"
            if not Path(go).exists():
                return False, "Go is not installed on this machine"
            out = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
            wanted = _version(with_["go-version"])
            have = _version(out.split()[2] if len(out.split()) > 2 else "")
            log.write_text(out + "\n")
            if have[: len(wanted)] < wanted:
                return False, f"{out}, older than the {with_['go-version']} asked for"
            path_dirs.append(str(Path(go).parent))
            return True, out
        if action.kind == "cache":
            return self._cache(with_, runner, log)
        return False, f"no local equivalent for {action.action}"

    def _cache(self, with_: dict[str, str], runner: Runner, log: Path) -> tuple[bool, str]:
        """A cold cache restores nothing; `--warm-cache` restores as a hit would: tar, extracted as the runner user."""
        self.caches.append(with_)
        if not self.warm_cache:
            log.write_text("cold: nothing restored\n")
            return True, "cold: nothing restored"
        members = cache_members(Path.home(), with_.get("path", ""))
        if not members:
            log.write_text(f"miss: nothing under {Path.home()} matches\n")
            return True, "miss: nothing to restore"
        listing = runner.home / "work" / "_temp" / "cache-restore.list"
        listing.write_text("\n".join(members) + "\n")
        pack = subprocess.Popen(
            ["tar", "-C", str(Path.home()), "--no-recursion", "-T", str(listing), "-cf", "-"], stdout=subprocess.PIPE
        )
        unpack = subprocess.run(
            runner.as_user({"HOME": str(runner.home)}, ["tar", "-C", str(runner.home), "-xf", "-"]),
            stdin=pack.stdout,
            capture_output=True,
            text=True,
        )
        pack.wait()
        log.write_text(unpack.stdout + unpack.stderr)
        if unpack.returncode != 0:
            # actions/cache warns and goes on with what it could not restore; the replay does the same.
            return True, f"restore failed, as a cold cache (tar: {unpack.stderr.strip().splitlines()[-1][:160]})"
        return True, f"hit (--warm-cache): {len(members)} entries from {Path.home()}"

    def save_caches(self, runner: Runner, env: dict[str, str]) -> list[str]:
        """What each cache's post-job save would do: tar of its paths as the runner user (root-owned files fail it)."""
        notes = []
        for with_ in self.caches:
            path = " ".join(p.strip() for p in with_.get("path", "").splitlines() if p.strip())
            members = cache_members(runner.home, with_.get("path", ""))
            if not members:
                notes.append(f"cache save of {path}: nothing to save")
                continue
            listing = runner.home / "work" / "_temp" / "cache-save.list"
            listing.write_text("\n".join(members) + "\n")
            runner.own(listing)
            # Through a pipe: GNU tar reads no file contents when its archive is /dev/null.
            script = f"tar -C ~ --no-recursion -T {shlex.quote(str(listing))} -cf - | wc -c"
            argv = runner.as_user(env, ["bash", "-o", "pipefail", "-c", script])
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode == 0:
                notes.append(f"cache save of {path}: would succeed ({int(done.stdout) / 2**20:.0f} MiB)")
            else:
                errors = [line for line in done.stderr.splitlines() if line.startswith("tar:")]
                notes.append(f"cache save of {path}: WOULD FAIL ({len(errors)} tar errors, first: {errors[:1]})")
        return notes


def cache_members(home: Path, paths: str) -> list[str]:
    """Entries (relative to `home`) an actions/cache `path:` block names: `~/` paths, `!` lines excluded."""
    include = [p.strip()[2:] for p in paths.splitlines() if p.strip().startswith("~/")]
    exclude = [p.strip()[3:] for p in paths.splitlines() if p.strip().startswith("!~/")]

    def excluded(rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude)

    members: list[str] = []
    for top in include:
        if not (home / top).exists() or excluded(top):
            continue
        members.append(top)
        for root, dirs, files in os.walk(home / top):
            rel_root = os.path.relpath(root, home)
            dirs[:] = [d for d in dirs if not excluded(f"{rel_root}/{d}")]
            members.extend(f"{rel_root}/{n}" for n in sorted(dirs + files) if not excluded(f"{rel_root}/{n}"))
    return members


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _own_tree(runner: Runner, top: Path) -> None:
    for root, dirs, files in os.walk(top):
        for name in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
            os.lchown(name, runner.uid, runner.gid)


def _hash_files(workspace: Path, patterns: list[str]) -> str:
    digest = hashlib.sha256()
    for path in sorted({p for pattern in patterns for p in workspace.glob(pattern) if p.is_file()}):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _indent(text: str) -> str:
    return "\n".join(f"     | {line}" for line in text.rstrip().splitlines())


# ---------------------------------------------------------------------------------------------------------------
# Command line.


def describe(workflow: Workflow, job_ids: list[str], event: str) -> str:
    """Each chosen job's steps as the replay would run them (no user, no clone): the `--list` output."""
    lines = []
    for job_id in job_ids:
        job = workflow.jobs[job_id]
        context = Context(
            {"github": {"event_name": event, "workspace": "$GITHUB_WORKSPACE"}, "env": {}, "runner": {}, "needs": {}}
        )
        runs = condition(job.if_, context)
        extra = f", needs {', '.join(job.needs)}" if job.needs else ""
        verdict = "" if runs else f"  [skipped on a {event} event: if: {job.if_}]"
        lines.append(f"{job_id} ({job.runs_on}, timeout {job.timeout_minutes:g} min{extra}){verdict}")
        for step in job.steps:
            if step.uses:
                try:
                    what = local_action(step.uses, step.with_).summary
                except ReplayError as exc:
                    what = f"FAILS: {exc}"
            else:
                what = "bash: " + " ; ".join(line.strip() for line in (step.run or "").splitlines() if line.strip())
            env = f"  env: {', '.join(sorted(step.env))}" if step.env else ""
            lines.append(f"  [{step.index}] {step.name}: {what}{env}")
    return "\n".join(lines)


def choose_jobs(workflow: Workflow, wanted: str | None) -> list[str]:
    """The jobs named in `wanted` (comma-separated) in workflow order, or all of them."""
    if not wanted:
        return list(workflow.jobs)
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [n for n in names if n not in workflow.jobs]
    if unknown:
        raise ReplayError(f"no job {', '.join(unknown)} in the workflow; it has {', '.join(workflow.jobs)}.")
    return [j for j in workflow.jobs if j in names]


def parse_skips(workflow: Workflow, values: list[str]) -> list[str]:
    """`JOB:N` values naming steps to leave out, checked against the workflow."""
    for value in values:
        job, _, index = value.partition(":")
        if job not in workflow.jobs or not index.isdigit() or not 1 <= int(index) <= len(workflow.jobs[job].steps):
            raise ReplayError(f"--skip {value} names no step: give JOB:N with N a step number from --list.")
    return values


def report(results: list[JobResult]) -> str:
    """The per-job, per-step table printed at the end."""
    lines = [f"{'job':8} {'step':54} {'result':8} {'seconds':>8}"]
    for job in results:
        for step in job.steps:
            lines.append(f"{job.job:8} {f'[{step.index}] {step.name}'[:54]:54} {step.status:8} {step.seconds:8.1f}")
        note = f"  ({job.detail})" if job.detail else ""
        lines.append(f"{job.job:8} {'= job':54} {job.status:8} {job.seconds:8.1f}{note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.ci.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW, help="workflow file (default: ci.yml)")
    parser.add_argument("--jobs", help="comma-separated job ids (default: every job)")
    parser.add_argument("--event", default="pull_request", help="github.event_name for `if:` (default pull_request)")
    parser.add_argument("--source", type=Path, default=Path("."), help="git repository to clone (default: here)")
    parser.add_argument("--ref", default="HEAD", help="commit to replay (default HEAD, without uncommitted changes)")
    parser.add_argument("--repository", default="local/transformers-qa", help="owner/name the workspace is named after")
    parser.add_argument("--logs", type=Path, help="where step logs go (default /tmp/tqa-ci-replay/<time>)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--warm-cache", action="store_true", help="actions/cache restores the path from this home")
    parser.add_argument("--keep", action="store_true", help="keep the runner user and its home after each job")
    parser.add_argument("--skip", action="append", default=[], help="JOB:N: leave step N of JOB out (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the steps as they would run; run nothing")
    args = parser.parse_args(argv)
    try:
        workflow = parse_workflow(args.workflow.read_text())
        jobs = choose_jobs(workflow, args.jobs)
        if args.list:
            print(describe(workflow, jobs, args.event))
            return 0
        if os.geteuid() != 0:
            raise ReplayError("the replay creates a runner user for each job and needs root: run it with sudo.")
        source = args.source.resolve()
        sha = subprocess.run(
            ["git", "-C", str(source), "rev-parse", f"{args.ref}^{{commit}}"], capture_output=True, text=True
        )
        if sha.returncode != 0:
            raise ReplayError(f"{args.ref} is not a commit of {source}.")
        status = ["git", "-C", str(source), "status", "--porcelain", "-uno"]
        if subprocess.run(status, capture_output=True, text=True).stdout.strip():
            print(f"note: {source} has uncommitted changes; the replay runs {sha.stdout.strip()[:12]} without them")
        logs = args.logs or Path("/tmp/tqa-ci-replay") / time.strftime("%Y%m%d-%H%M%S")
        skip = set(parse_skips(workflow, args.skip))
        replay = Replay(
            workflow, source, sha.stdout.strip(), args.event, logs, args.repository, args.warm_cache, args.keep, skip
        )
        print(f"replaying {args.workflow} at {sha.stdout.strip()[:12]} ({args.event}): {', '.join(jobs)}", flush=True)
        results = replay.run(jobs)
    except ReplayError as exc:
        print(f"ci replay: {exc}", file=sys.stderr)
        return 2
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([_as_dict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.status in ("pass", "skipped") for r in results) else 1


def _as_dict(result: JobResult) -> dict[str, Any]:
    return {
        "job": result.job,
        "status": result.status,
        "seconds": round(result.seconds, 1),
        "detail": result.detail,
        "steps": [
            {"index": s.index, "name": s.name, "status": s.status, "seconds": round(s.seconds, 1), "detail": s.detail}
            for s in result.steps
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
