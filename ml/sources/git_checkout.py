"""A git checkout's files at a commit, as a file source of the ingest engine, and the git plumbing it needs.

Code chunks are made from the blobs at the commit, pinned to the last first-parent commit that changed their file
(so unchanged files keep identical chunks from one sync to the next), with `history` from `git blame`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ml.errors import UserError
from ml.sources.blame import annotate
from ml.sources.corpus import Corpus, FileChunks, chunk_file
from ml.sources.git_history import git, repo_base_url
from ml.sources.selection import DEFAULT_DOC_LANGUAGES, is_indexed

# Commits named on one `git log` command line.
_COMMITS_PER_LOG = 500


def tree(repo: Path, rev: str, doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES) -> dict[str, str]:
    """path -> blob SHA of the indexed files at `rev`."""
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", rev], capture_output=True, check=True).stdout
    files = {}
    for entry in out.decode("utf-8", errors="replace").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob" and mode != "120000" and is_indexed(path, doc_languages):
            files[path] = blob
    return files


def read_blobs(repo: Path, blobs: list[str]) -> dict[str, bytes]:
    """Contents of blobs through one `git cat-file --batch` process."""
    if not blobs:
        return {}
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input="".join(b + "\n" for b in blobs).encode(),
        capture_output=True,
        check=True,
    )
    data, out, pos = proc.stdout, {}, 0
    for blob in blobs:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        size = int(header[2])
        out[blob] = data[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return out


def last_touch(repo: Path, rev: str, paths: Iterable[str]) -> dict[str, str]:
    """For each path, the newest first-parent commit of `rev` that changed it (its file there equals `rev`'s)."""
    todo = set(paths)
    found: dict[str, str] = {}
    if not todo:
        return found
    cmd = ["git", "-C", str(repo), "-c", "core.quotepath=off", "log", "--first-parent", "--diff-merges=first-parent"]
    cmd += ["--no-renames", "--name-only", "--format=\x1e%H", rev, "--"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        sha = ""
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith("\x1e"):
                sha = line[1:]
            elif line in todo:
                found[line] = sha
                todo.discard(line)
                if not todo:
                    proc.kill()
                    break
    return found


def touched_paths(repo: Path, shas: list[str]) -> set[str]:
    """Paths changed by these commits (both names of a rename; a merge against its first parent)."""
    out: set[str] = set()
    for start in range(0, len(shas), _COMMITS_PER_LOG):
        text = git(
            repo,
            "-c",
            "core.quotepath=off",
            "log",
            "--no-walk=unsorted",
            "--diff-merges=first-parent",
            "--no-renames",
            "--name-only",
            "--format=",
            *shas[start : start + _COMMITS_PER_LOG],
            "--",
        )
        out.update(line for line in text.splitlines() if line)
    return out


def reachable(repo: Path, rev: str) -> list[str]:
    """Every commit reachable from `rev`, newest first."""
    return git(repo, "rev-list", rev).split()


def fetch(repo: Path, remote: str, branch: str) -> str:
    """`git fetch <remote> <branch>` and the SHA it points to now."""
    git(repo, "fetch", "--quiet", remote, branch)
    return git(repo, "rev-parse", f"{remote}/{branch}").strip()


def owner_repo_of(repo: Path, default: str | None = None, repo_url: str | None = None) -> str:
    """Where links of the checkout point: `owner/name` on GitHub, another web address, or `file://<checkout>`.

    In order: `repo_url` when given (a GitHub URL becomes `owner/name`), the `origin` remote when it is on GitHub,
    `default` when set, else the checkout itself as `file://`, never another repository's address.
    """
    for url in (repo_url, git(repo, "remote", "get-url", "origin", check=False)):
        url = (url or "").strip().removesuffix("/").removesuffix(".git")
        for prefix in ("https://github.com/", "http://github.com/", "git@github.com:", "ssh://git@github.com/"):
            if url.startswith(prefix) and url[len(prefix) :].count("/") == 1:
                return url[len(prefix) :]
        if url and url == (repo_url or "").strip().removesuffix("/").removesuffix(".git"):
            if "://" not in url:
                raise UserError(f"--repo-url {repo_url!r} is not a URL; write it like https://github.com/owner/name.")
            return url
    return default or f"file://{Path(repo).resolve().as_posix()}"


@dataclass
class CheckoutSource:
    """The indexed files of `repo` at commit `rev`: versions are blob SHAs, chunks are pinned and blamed."""

    repo: Path
    rev: str
    corpus: str
    owner_repo: str
    doc_languages: tuple[str, ...] = DEFAULT_DOC_LANGUAGES
    _files: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def versions(self) -> tuple[dict[str, str], list[str]]:
        self._files = tree(self.repo, self.rev, self.doc_languages)
        return dict(self._files), []

    def chunks(self, paths: list[str]) -> Iterator[FileChunks]:
        files = {p: self._files[p] for p in paths}
        pins = last_touch(self.repo, self.rev, files)
        contents = read_blobs(self.repo, sorted(set(files.values())))
        made: list[FileChunks] = []
        for path, blob in files.items():
            pin = pins.get(path, self.rev)
            corpus = Corpus(
                name=self.corpus,
                root=self.repo,
                base=self.repo,
                version=pin[:12],
                commit=pin,
                ref=pin if self.owner_repo and not self.owner_repo.startswith("file://") else "",
                repo_url=repo_base_url(self.owner_repo),
            )
            result = chunk_file(corpus, path, contents[blob])
            result.version = blob
            made.append(result)
        annotated = iter(annotate([c for f in made for c in f.chunks], self.repo, self.rev))
        for f in made:
            f.chunks = [next(annotated) for _ in f.chunks]
            yield f
