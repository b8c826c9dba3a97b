"""GitHub REST client for issues, PRs and reviews: pagination, ETags, `since` cursors, rate limits and retries.

Waiting is injectable (`sleep`, `clock`) so rate-limit handling is tested without real waits. Conditional requests
reuse the cached body on `304 Not Modified`, which GitHub does not count against the rate limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx

from ml.errors import UserError

USER_AGENT = "transformers-qa"
# Secondary rate limits without Retry-After: GitHub asks to wait at least a minute, then back off exponentially.
SECONDARY_WAIT_S = 60.0


class GitHubError(RuntimeError):
    """The API failed in a way retrying did not fix (malformed page, persistent 5xx); nothing was recorded."""


class GitHubClient:
    """A small synchronous client for one repository's issues, pulls and comments.

    Args:
        owner_repo: `owner/name`.
        token: A personal access token (`TQA_GITHUB_TOKEN`); anonymous when None.
        api_url: `https://api.github.com` or a GitHub Enterprise / test server URL.
        etags: Where conditional-request validators and bodies are kept between calls (url -> (etag, body)).
        sleep, clock: Injected for tests; default to `time.sleep` and `time.time`.
        max_retries: Attempts for 5xx and transport errors before giving up.
        max_wait_s: The longest single rate-limit wait accepted; a longer one raises instead of hanging.
        client: An `httpx.Client` to use (not closed here); one is created and owned otherwise.
    """

    def __init__(
        self,
        owner_repo: str,
        token: str | None = None,
        api_url: str = "https://api.github.com",
        etags: MutableMapping[str, tuple[str, str]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_retries: int = 5,
        max_wait_s: float = 3600.0,
        per_page: int = 100,
        client: httpx.Client | None = None,
    ) -> None:
        if owner_repo.count("/") != 1 or not all(owner_repo.split("/")):
            raise UserError(
                f"GitHub repository {owner_repo!r} must be written owner/name, e.g. huggingface/transformers."
            )
        self.owner_repo = owner_repo
        self.api_url = api_url.rstrip("/")
        self.etags = etags if etags is not None else {}
        self.sleep, self.clock = sleep, clock
        self.max_retries, self.max_wait_s, self.per_page = max_retries, max_wait_s, per_page
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._owns = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
        self._headers = headers
        self._blocked_until = 0.0
        self.stats = {"requests": 0, "not_modified": 0, "rate_limited": 0, "retries": 0}

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Requests

    def get(self, url: str, params: dict[str, Any] | None = None) -> tuple[Any, httpx.Response | None]:
        """One GET with conditional request, rate-limit waits and retries; returns (json, response)."""
        request = self._client.build_request("GET", url, params=params, headers=self._headers)
        key = str(request.url)
        cached = self.etags.get(key)
        if cached:
            request.headers["If-None-Match"] = cached[0]
        attempt = 0
        secondary = 0
        while True:
            self._wait_until(self._blocked_until)
            try:
                self.stats["requests"] += 1
                response = self._client.send(request)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > self.max_retries:
                    raise GitHubError(f"GitHub API unreachable at {key} after {attempt} attempts: {exc}") from exc
                self.stats["retries"] += 1
                self.sleep(min(2.0**attempt, 60.0))
                continue
            self._note_limits(response)
            status = response.status_code
            if status == 304 and cached:
                self.stats["not_modified"] += 1
                return json.loads(cached[1]), response
            if status in (403, 429) and self._is_rate_limited(response):
                self.stats["rate_limited"] += 1
                secondary += 1
                self._wait_for_limit(response, secondary)
                continue
            if status >= 500:
                attempt += 1
                if attempt > self.max_retries:
                    raise GitHubError(f"GitHub API returned {status} for {key} after {attempt} attempts.")
                self.stats["retries"] += 1
                self.sleep(min(2.0**attempt, 60.0))
                continue
            if status == 401:
                raise UserError("GitHub rejected the token; set TQA_GITHUB_TOKEN to a valid token.")
            if status == 404:
                raise UserError(f"GitHub has no {key} (check the repository name and that the token can read it).")
            if status >= 400:
                raise GitHubError(f"GitHub API returned {status} for {key}: {response.text[:200]}")
            try:
                body = response.json()
            except ValueError as exc:
                raise GitHubError(f"GitHub API returned a malformed page for {key}: not JSON ({exc}).") from exc
            etag = response.headers.get("ETag")
            if etag:
                self.etags[key] = (etag, response.text)
            return body, response

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list endpoint, following `Link: rel="next"` until the last page."""
        url: str | None = f"{self.api_url}/repos/{self.owner_repo}/{path.lstrip('/')}"
        query: dict[str, Any] | None = {"per_page": self.per_page, **(params or {})}
        while url:
            body, response = self.get(url, query)
            if not isinstance(body, list) or not all(isinstance(x, dict) for x in body):
                raise GitHubError(f"GitHub API returned a malformed page for {url}: expected a JSON list of objects.")
            yield body
            url = response.links.get("next", {}).get("url") if response is not None else None
            query = None  # the next link carries the query

    def all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [item for page in self.pages(path, params) for item in page]

    def object(self, path: str) -> dict[str, Any]:
        body, _ = self.get(f"{self.api_url}/repos/{self.owner_repo}/{path.lstrip('/')}")
        if not isinstance(body, dict):
            raise GitHubError(f"GitHub API returned a malformed object for {path}: expected a JSON object.")
        return body

    # Endpoints

    def issue_pages(self, since: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Issues and PRs (the issues endpoint returns both), least recently updated first, from `since`."""
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc"}
        if since:
            params["since"] = since
        for page in self.pages("issues", params):
            for item in page:
                _require(item, ("number", "title", "updated_at"), "issue")
            yield page

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        return self.all(f"issues/{number}/comments")

    def pull(self, number: int) -> dict[str, Any]:
        return self.object(f"pulls/{number}")

    def review_comments(self, number: int) -> list[dict[str, Any]]:
        return self.all(f"pulls/{number}/comments")

    def reviews(self, number: int) -> list[dict[str, Any]]:
        return self.all(f"pulls/{number}/reviews")

    # Rate limits

    def _note_limits(self, response: httpx.Response) -> None:
        if response.headers.get("X-RateLimit-Remaining") == "0" and response.status_code < 300:
            self._blocked_until = _float(response.headers.get("X-RateLimit-Reset"), 0.0) + 1.0

    @staticmethod
    def _is_rate_limited(response: httpx.Response) -> bool:
        if response.status_code == 429 or "Retry-After" in response.headers:
            return True
        if response.headers.get("X-RateLimit-Remaining") == "0":
            return True
        return "rate limit" in response.text.lower()

    def _wait_for_limit(self, response: httpx.Response, n: int) -> None:
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None:
            self._wait(_float(retry_after, SECONDARY_WAIT_S))
        elif response.headers.get("X-RateLimit-Remaining") == "0":
            self._wait_until(_float(response.headers.get("X-RateLimit-Reset"), self.clock() + SECONDARY_WAIT_S) + 1.0)
        else:
            self._wait(SECONDARY_WAIT_S * 2 ** (n - 1))

    def _wait_until(self, t: float) -> None:
        delay = t - self.clock()
        if delay > 0:
            self._wait(delay)

    def _wait(self, seconds: float) -> None:
        if seconds > self.max_wait_s:
            raise GitHubError(
                f"GitHub rate limit asks to wait {seconds:.0f} s, more than the {self.max_wait_s:.0f} s allowed."
            )
        self.sleep(seconds)


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def _require(item: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in item]
    if missing:
        raise GitHubError(f"GitHub API returned a malformed {what}: missing {', '.join(missing)}.")
