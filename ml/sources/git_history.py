"""Git history as chunks: one chunk per commit and bounded chunks of its diff hunks per file.

Commits are read with one streaming `git log -p` (the git CLI that GitPython drives), so thousands of commits cost
one process, not one per commit. PR numbers come from merge and squash messages, issue numbers from `Fixes #N`.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ml.errors import UserError
from ml.types import Chunk, chunk_id

# A diff chunk holds at most this many characters of hunks; a file's diff above HUGE_DIFF is summarised instead.
MAX_DIFF_CHARS = 3000
HUGE_DIFF_CHARS = 60_000
MAX_FILES_LISTED = 60
MAX_MESSAGE_CHARS = 4000

_SQUASH_PR = re.compile(r"\(#(\d+)\)")
_MERGE_PR = re.compile(r"^Merge pull request #(\d+)\b")
_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b\s*:?\s+"
    r"(?:(?:[\w.-]+/[\w.-]+)?#(\d+)|https?://github\.com/[\w.-]+/[\w.-]+/issues/(\d+))",
    re.IGNORECASE,
)
_REVERT = re.compile(r"This reverts commit ([0-9a-f]{7,40})")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_DEF = re.compile(r"^[+-]\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)")

# Record separators for `git log --format`: they never occur in commit messages or paths in practice.
_RS, _US = "\x1e", "\x1f"
_FORMAT = f"{_RS}%H{_US}%P{_US}%an{_US}%ae{_US}%cI{_US}%B{_US}"


def parse_pr(message: str) -> int | None:
    """The PR a commit came from: `Merge pull request #N` or the last `(#N)` of a squash-merge subject."""
    subject = message.strip().splitlines()[0] if message.strip() else ""
    merge = _MERGE_PR.match(subject)
    if merge:
        return int(merge.group(1))
    found = _SQUASH_PR.findall(subject)
    return int(found[-1]) if found else None


def parse_issues(message: str) -> list[int]:
    """Issues a message closes (`Fixes #N`, `Closes owner/repo#N`, `Resolves <issue URL>`), in order, no repeats."""
    out: list[int] = []
    for a, b in _CLOSING.findall(message):
        n = int(a or b)
        if n not in out:
            out.append(n)
    return out


def history_ref(sha: str, pr: int | None) -> str:
    """The form `Chunk.history` stores: `sha` or `sha#pr`."""
    return f"{sha}#{pr}" if pr else sha


def commit_chunk_id(corpus: str, sha: str) -> str:
    """Id of a commit's chunk, computable from the SHA alone so retrieval can walk code -> commit."""
    return chunk_id(corpus, "", "commit", sha, 0)


@dataclass
class FileDiff:
    """One file's change in a commit."""

    path: str
    old_path: str = ""
    status: str = "M"  # A, M, D, R
    binary: bool = False
    added: int = 0
    deleted: int = 0
    hunks: list[tuple[int, int, int, int, list[str]]] = field(default_factory=list)  # old, old_n, new, new_n, lines


@dataclass
class Commit:
    """A parsed commit with its per-file diffs."""

    sha: str
    parents: list[str]
    author: str
    email: str
    date: str
    message: str
    files: list[FileDiff] = field(default_factory=list)
    # From the merge that brought this commit into the first-parent line (`branch_links`), when its own message
    # names no PR or issue.
    merged_pr: int | None = None
    merged_issues: list[int] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.message.strip().splitlines()[0] if self.message.strip() else ""

    @property
    def pr(self) -> int | None:
        return parse_pr(self.message) or self.merged_pr

    @property
    def issues(self) -> list[int]:
        return parse_issues(self.message) or list(self.merged_issues)

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run git in `repo` and return stdout; a failure raises with git's own message."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def resolve(repo: Path, rev: str = "HEAD") -> str:
    """The full SHA of `rev`; a path that is not a git checkout is a user error."""
    if not (Path(repo) / ".git").exists() and git(repo, "rev-parse", "--git-dir", check=False).strip() == "":
        raise UserError(f"{repo} is not a git checkout; pass --path to a clone of the repository.")
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True)
    if proc.returncode != 0:
        raise UserError(f"{rev!r} is not a commit in {repo}; check the branch or SHA.")
    return proc.stdout.decode().strip()


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    """Whether `old` is reachable from `new` (false after a force-push rewrote it away)."""
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", old, new]).returncode == 0


def iter_commits(repo: Path, revs: list[str], with_patch: bool = True) -> Iterator[Commit]:
    """Stream commits of `git log <revs>` (newest first) with their diffs against the first parent.

    Args:
        repo: The checkout.
        revs: Revision arguments, e.g. `["HEAD"]`, `["old..new"]` or `["new", "^old"]`.
        with_patch: Parse hunks (diff chunks need them; commit chunks need only the file list and counts).
    """
    args = ["git", "-C", str(repo), "-c", "core.quotepath=off", "log", f"--format={_FORMAT}", "-M"]
    args += ["--diff-merges=first-parent", "--no-color", "--no-ext-diff"]
    args += ["-p", "--unified=3"] if with_patch else ["--numstat"]
    with subprocess.Popen([*args, *revs, "--"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        buf = b""
        for block in iter(lambda: proc.stdout.read(1 << 20), b""):
            buf += block
            records = buf.split(_RS.encode())
            buf = records.pop()
            for record in records:
                if record:
                    yield _parse_record(record.decode("utf-8", errors="replace"), with_patch)
        if buf:
            yield _parse_record(buf.decode("utf-8", errors="replace"), with_patch)
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"git log {' '.join(revs)} failed in {repo}: {err.strip()}")


def _parse_record(record: str, with_patch: bool) -> Commit:
    sha, parents, author, email, date, message, rest = record.split(_US, 6)
    commit = Commit(sha, parents.split(), author, email, date, message.strip())
    commit.files = _parse_patch(rest) if with_patch else _parse_numstat(rest)
    return commit


def _parse_numstat(text: str) -> list[FileDiff]:
    files = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        old = ""
        if " => " in path:
            old, path = _split_rename(path)
        binary = added == "-"
        files.append(
            FileDiff(
                path,
                old,
                "R" if old else "M",
                binary,
                0 if binary else int(added),
                0 if binary else int(deleted),
            )
        )
    return files


def _split_rename(path: str) -> tuple[str, str]:
    """`a/{x => y}/z` or `x => y` from numstat into (old, new)."""
    m = re.match(r"^(.*)\{(.*) => (.*)\}(.*)$", path)
    if m:
        pre, a, b, post = m.groups()
        return (pre + a + post).replace("//", "/"), (pre + b + post).replace("//", "/")
    a, b = path.split(" => ", 1)
    return a, b


def _parse_patch(text: str) -> list[FileDiff]:
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            current = FileDiff(path=_diff_git_path(line))
            files.append(current)
            hunk = None
            continue
        if current is None:
            continue
        if hunk is None:
            if line.startswith("new file mode"):
                current.status = "A"
            elif line.startswith("deleted file mode"):
                current.status = "D"
            elif line.startswith("rename from "):
                current.old_path, current.status = line[len("rename from ") :], "R"
            elif line.startswith("rename to "):
                current.path = line[len("rename to ") :]
            elif line.startswith("+++ ") and line != "+++ /dev/null":
                current.path = line[len("+++ b/") :]
            elif line.startswith("--- ") and line != "--- /dev/null" and current.status == "D":
                current.path = line[len("--- a/") :]
            elif line.startswith("Binary files ") or line == "GIT binary patch":
                current.binary = True
        m = _HUNK.match(line)
        if m:
            old, old_n, new, new_n, _ = m.groups()
            hunk = [line]
            current.hunks.append(
                (
                    int(old),
                    int(old_n) if old_n is not None else 1,
                    int(new),
                    int(new_n) if new_n is not None else 1,
                    hunk,
                )
            )
            continue
        if hunk is not None and line and line[0] in "+- \\":
            hunk.append(line)
            if line[0] == "+":
                current.added += 1
            elif line[0] == "-":
                current.deleted += 1
    return files


def _diff_git_path(line: str) -> str:
    """The b/ path of a `diff --git a/x b/x` line (exact for unquoted paths; `+++`/rename lines refine it)."""
    rest = line[len("diff --git ") :]
    half = (len(rest) - 1) // 2
    if rest[half] == " " and rest[2:half] == rest[half + 3 :]:
        return rest[half + 3 :]
    idx = rest.rfind(" b/")
    return rest[idx + 3 :] if idx >= 0 else rest


def repo_base_url(owner_repo: str) -> str:
    """The web address of a repository: `owner/name` is on GitHub; a URL (https://, file://) is kept as given."""
    if not owner_repo or "://" in owner_repo:
        return owner_repo.rstrip("/")
    return f"https://github.com/{owner_repo}"


def commit_url(owner_repo: str, sha: str) -> str:
    """The commit's web page, or "" when the repository has no web address (a `file://` checkout)."""
    base = repo_base_url(owner_repo)
    return f"{base}/commit/{sha}" if base.startswith(("https://", "http://")) else ""


def branch_links(repo: Path, rev: str, wanted: set[str] | None = None) -> dict[str, tuple[int, list[int]]]:
    """PR and issues of the merge that brought each branch commit into the first-parent line of `rev`.

    A commit on a merged branch usually names no PR; the `Merge pull request #N` commit that merged it does. Only
    merges in `wanted` (all when None) are expanded, so an incremental sync pays for its new merges only.
    """
    out: dict[str, tuple[int, list[int]]] = {}
    log = git(repo, "log", "--first-parent", "--merges", f"--format={_RS}%H{_US}%P{_US}%B", rev, "--")
    for record in log.split(_RS):
        if not record.strip():
            continue
        sha, parents, message = record.split(_US, 2)
        pr = parse_pr(message)
        ps = parents.split()
        if pr is None or len(ps) < 2 or (wanted is not None and sha not in wanted):
            continue
        issues = parse_issues(message)
        for branch_sha in git(repo, "rev-list", ps[1], *(f"^{p}" for p in ps[:1] + ps[2:]), "--").split():
            out.setdefault(branch_sha, (pr, issues))
    return out


def _diff_anchor(path: str, side: str, line: int) -> str:
    """GitHub's anchor for a file's diff in a commit page: `#diff-<sha256(path)>R<line>`."""
    return f"#diff-{hashlib.sha256(path.encode()).hexdigest()}{side}{line}" if line else ""


def commit_text(commit: Commit) -> str:
    """The searchable text of a commit: who, when, links, message and the files it changed with +/- counts."""
    links = []
    if commit.pr:
        links.append(f"PR #{commit.pr}")
    if commit.issues:
        links.append("fixes " + ", ".join(f"#{n}" for n in commit.issues))
    revert = _REVERT.search(commit.message)
    if revert:
        links.append(f"reverts {revert.group(1)[:12]}")
    header = [f"commit {commit.sha}", f"Author: {commit.author}", f"Date: {commit.date}"]
    if commit.is_merge:
        header.append("Merge of " + " ".join(p[:12] for p in commit.parents))
    if links:
        header.append("Links: " + "; ".join(links))
    message = commit.message[:MAX_MESSAGE_CHARS]
    listed = []
    for f in commit.files[:MAX_FILES_LISTED]:
        name = f"{f.old_path} -> {f.path}" if f.status == "R" else f.path
        counts = "binary" if f.binary else f"+{f.added} -{f.deleted}"
        listed.append(f"  {f.status} {name} {counts}")
    if len(commit.files) > MAX_FILES_LISTED:
        listed.append(f"  ... and {len(commit.files) - MAX_FILES_LISTED} more files")
    added = sum(f.added for f in commit.files)
    deleted = sum(f.deleted for f in commit.files)
    files = f"Files changed ({len(commit.files)}, +{added} -{deleted}):" if commit.files else "No file changes."
    return "\n".join([*header, "", message, "", files, *listed])


def commit_chunks(commit: Commit, corpus: str, owner_repo: str, with_diffs: bool = True) -> list[Chunk]:
    """The commit's chunk, then its diff chunks (none for a merge: its changes are in the merged commits)."""
    url = commit_url(owner_repo, commit.sha)
    issues = commit.issues
    common = dict(
        commit=commit.sha,
        pr=commit.pr,
        issue=issues[0] if issues else None,
        date=commit.date,
        corpus_version=commit.sha,
    )
    chunks = [
        Chunk(
            id=commit_chunk_id(corpus, commit.sha),
            kind="commit",
            text=commit_text(commit),
            path="",
            # The short SHA keeps commits with the same subject ("Update README.md") distinct in search results.
            symbol=f"{commit.sha[:7]} {commit.subject[:200]}",
            url=url,
            **common,
        )
    ]
    if with_diffs and not commit.is_merge:
        for f in commit.files:
            for part, (text, start, end, side) in enumerate(diff_pieces(commit, f)):
                chunks.append(
                    Chunk(
                        id=chunk_id(corpus, f.path, "diff", commit.sha, part),
                        kind="diff",
                        text=text,
                        path=f.path,
                        start_line=start,
                        end_line=end,
                        symbol=commit.subject[:200],
                        url=url + _diff_anchor(f.path, side, start) if url else "",
                        **common,
                    )
                )
    return chunks


def diff_pieces(commit: Commit, f: FileDiff) -> list[tuple[str, int, int, str]]:
    """(text, start, end, side) windows over one file's hunks; binary and huge diffs become one summary.

    Lines are those of the new file (side `R`), or of the old file for a deletion (side `L`).
    """
    pr = f" (#{commit.pr})" if commit.pr and f"#{commit.pr}" not in commit.subject else ""
    head = f"diff of {f.path} @ {commit.sha[:12]}, {commit.date[:10]}: {commit.subject}{pr}\nauthor: {commit.author}"
    if f.status == "R":
        head += f"\nrenamed from {f.old_path}"
    side = "L" if f.status == "D" else "R"
    size = sum(len(line) + 1 for h in f.hunks for line in h[4])
    if f.binary or size > HUGE_DIFF_CHARS or not f.hunks:
        return [(head + "\n" + _summary(f), 0, 0, side)]
    pieces: list[tuple[str, int, int, str]] = []
    body: list[str] = []
    start = end = 0
    for old, old_n, new, new_n, lines in f.hunks:
        s, n = (old, old_n) if side == "L" else (new, new_n)
        text = "\n".join(lines)
        if body and sum(len(x) + 1 for x in body) + len(text) > MAX_DIFF_CHARS:
            pieces.append((head + "\n" + "\n".join(body), start, end, side))
            body = []
        if not body:
            start = s
        # A hunk alone above the bound is cut, with a note of how much is left out.
        if len(text) > MAX_DIFF_CHARS:
            kept = text[:MAX_DIFF_CHARS]
            text = kept[: kept.rfind("\n")] + f"\n... ({len(lines)} lines in this hunk, the rest left out)"
        body.append(text)
        end = max(s + max(n, 1) - 1, s)
    if body:
        pieces.append((head + "\n" + "\n".join(body), start, end, side))
    return pieces


def _summary(f: FileDiff) -> str:
    """What a binary or huge diff did, without its lines: status, counts and the symbols it added or removed."""
    verb = {"A": "added", "D": "deleted", "R": "renamed"}.get(f.status, "modified")
    if f.binary:
        return f"binary file {verb}"
    if not f.hunks:
        return f"file {verb}, content unchanged" if f.status == "R" else f"empty file {verb}"
    added = [m.group(1) for h in f.hunks for line in h[4] if line.startswith("+") and (m := _DEF.match(line))]
    removed = [m.group(1) for h in f.hunks for line in h[4] if line.startswith("-") and (m := _DEF.match(line))]
    out = [f"large diff summarised: +{f.added} -{f.deleted} lines in {len(f.hunks)} hunks"]
    if added:
        out.append("defines: " + ", ".join(list(dict.fromkeys(added))[:80]))
    if removed:
        out.append("removes: " + ", ".join(list(dict.fromkeys(removed))[:80]))
    out.append("hunks: " + "; ".join(h[4][0] for h in f.hunks[:20]))
    return "\n".join(out)


def history_chunks(
    repo: Path,
    revs: list[str],
    corpus: str,
    owner_repo: str,
    with_diffs: bool = True,
    merged: dict[str, tuple[int, list[int]]] | None = None,
) -> Iterator[tuple[Commit, list[Chunk]]]:
    """Each commit of `git log <revs>` with its chunks, newest first; `merged` is `branch_links` output."""
    for commit in iter_commits(repo, revs, with_patch=with_diffs):
        if merged and commit.sha in merged:
            commit.merged_pr, commit.merged_issues = merged[commit.sha]
        yield commit, commit_chunks(commit, corpus, owner_repo, with_diffs)
