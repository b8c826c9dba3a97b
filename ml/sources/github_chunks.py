"""Issue and PR threads as chunks: title, body and comments with authors and dates; PR reviews with file and line."""

from __future__ import annotations

from typing import Any

from ml.sources.git_history import parse_issues
from ml.types import Chunk, chunk_id

# A thread longer than this is split at comment boundaries; each part repeats the title line.
MAX_THREAD_CHARS = 3000
MAX_COMMENT_CHARS = 2500


def issue_url(owner_repo: str, number: int, is_pr: bool) -> str:
    return f"https://github.com/{owner_repo}/{'pull' if is_pr else 'issues'}/{number}"


def _login(obj: dict[str, Any] | None) -> str:
    return (obj or {}).get("login") or "ghost"


def _entry(author: str, date: str, body: str | None, what: str = "commented") -> str:
    text = (body or "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        text = text[:MAX_COMMENT_CHARS] + " ... (comment cut)"
    return f"@{author} {what} on {date[:10]}:\n{text}" if text else f"@{author} {what} on {date[:10]}."


def _split(title: str, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Group (anchor, text) entries into parts under MAX_THREAD_CHARS; returns (anchor of first entry, text)."""
    parts: list[tuple[str, str]] = []
    body: list[str] = []
    anchor = ""
    for entry_anchor, text in entries:
        if body and sum(len(x) + 2 for x in body) + len(text) > MAX_THREAD_CHARS:
            parts.append((anchor, "\n\n".join(body)))
            body = [f"{title} (continued)"]
            anchor = entry_anchor
        if not body:
            anchor = entry_anchor
        body.append(text)
    if body:
        parts.append((anchor, "\n\n".join(body)))
    return parts


def issue_chunks(
    corpus: str,
    owner_repo: str,
    issue: dict[str, Any],
    comments: list[dict[str, Any]],
    pull: dict[str, Any] | None = None,
    review_comments: list[dict[str, Any]] | None = None,
    reviews: list[dict[str, Any]] | None = None,
) -> list[Chunk]:
    """Chunks of one issue or PR thread (kind `issue` or `pr`), deterministic for the same API content.

    Args:
        corpus: Corpus name used in chunk ids.
        owner_repo: `owner/name` for links.
        issue: The item from the issues endpoint.
        comments: Its conversation comments.
        pull: For a PR, the pulls endpoint object (merge commit, merged time, branch).
        review_comments: For a PR, review comments on lines of files.
        reviews: For a PR, the reviews (approve / request changes with a body).
    """
    number = int(issue["number"])
    is_pr = pull is not None or "pull_request" in issue
    kind = "pr" if is_pr else "issue"
    url = issue_url(owner_repo, number, is_pr)
    title = f"{'PR' if is_pr else 'Issue'} #{number}: {issue.get('title') or ''}".strip()
    labels = [x.get("name", "") for x in issue.get("labels") or [] if isinstance(x, dict)]
    state = issue.get("state") or "open"
    header = [
        title,
        f"state: {state}, opened by @{_login(issue.get('user'))} on {(issue.get('created_at') or '')[:10]}",
    ]
    if issue.get("closed_at"):
        header[-1] += f", closed on {issue['closed_at'][:10]}"
    if labels:
        header.append("labels: " + ", ".join(labels))
    merge_commit = ""
    linked: list[int] = parse_issues(issue.get("body") or "")
    date = issue.get("created_at") or ""
    if pull is not None:
        if pull.get("merged_at"):
            merge_commit = pull.get("merge_commit_sha") or ""
            date = pull["merged_at"]
            header.append(f"merged on {pull['merged_at'][:10]} as commit {merge_commit}")
        base, head = (pull.get("base") or {}).get("ref"), (pull.get("head") or {}).get("ref")
        if base and head:
            header.append(f"branch {head} into {base}")
    if linked:
        header.append(("fixes " if is_pr else "mentions ") + ", ".join(f"#{n}" for n in linked))
    opening = (
        "\n".join(header)
        + "\n\n"
        + _entry(_login(issue.get("user")), issue.get("created_at") or "", issue.get("body"), "wrote")
    )

    events: list[tuple[str, str, str]] = []  # (time, anchor, text) in time order
    for c in comments:
        events.append(
            (
                c.get("created_at") or "",
                f"#issuecomment-{c.get('id')}",
                _entry(_login(c.get("user")), c.get("created_at") or "", c.get("body")),
            )
        )
    for r in reviews or []:
        verdict = (r.get("state") or "").lower().replace("_", " ")
        if (r.get("body") or "").strip() or verdict in ("approved", "changes requested"):
            events.append(
                (
                    r.get("submitted_at") or "",
                    f"#pullrequestreview-{r.get('id')}",
                    _entry(_login(r.get("user")), r.get("submitted_at") or "", r.get("body"), f"reviewed ({verdict})"),
                )
            )
    events.sort(key=lambda e: (e[0], e[1]))

    common = dict(
        kind=kind,
        pr=number if is_pr else None,
        issue=(linked[0] if is_pr and linked else (None if is_pr else number)),
        commit=merge_commit,
        date=date,
    )
    chunks: list[Chunk] = []
    for part, (anchor, text) in enumerate(_split(title, [("", opening)] + [(a, t) for _, a, t in events])):
        chunks.append(
            Chunk(
                id=chunk_id(corpus, f"{kind}/{number}", kind, str(number), part),
                text=text,
                path="",
                symbol=f"#{number}",
                url=url + anchor,
                **common,
            )
        )

    # Review comments stay with their file and line, so a question about a file finds what reviewers said of it.
    by_file: dict[str, list[dict[str, Any]]] = {}
    for rc in sorted(
        review_comments or [], key=lambda c: (c.get("path") or "", c.get("created_at") or "", c.get("id") or 0)
    ):
        by_file.setdefault(rc.get("path") or "", []).append(rc)
    for path, items in sorted(by_file.items()):
        entries = []
        for rc in items:
            line = rc.get("line") or rc.get("original_line") or 0
            hunk = "\n".join((rc.get("diff_hunk") or "").splitlines()[-4:])
            text = f"{path}:{line}\n{hunk}\n" + _entry(
                _login(rc.get("user")), rc.get("created_at") or "", rc.get("body"), "reviewed"
            )
            entries.append((f"#discussion_r{rc.get('id')}", text, int(line or 0)))
        lines = [e[2] for e in entries if e[2]]
        for part, (anchor, text) in enumerate(_split(f"{title} review of {path}", [(a, t) for a, t, _ in entries])):
            chunks.append(
                Chunk(
                    id=chunk_id(corpus, path, kind, str(number), part),
                    text=(f"{title} review of {path}\n" if part == 0 else "") + text,
                    path=path,
                    start_line=min(lines, default=0),
                    end_line=max(lines, default=0),
                    symbol=f"#{number}",
                    url=url + anchor,
                    **common,
                )
            )
    return chunks
