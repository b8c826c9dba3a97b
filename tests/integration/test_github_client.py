"""The real GitHub client against a recorded-format server on 127.0.0.1: paging, 304, rate limits, 5xx, bad pages."""

from __future__ import annotations

import pytest

from ml.errors import UserError
from ml.sources.github import GitHubClient, GitHubError
from tests.support.github_server import FakeGitHub, Reply, issue

pytestmark = pytest.mark.integration

ISSUES = "/repos/example/minitf/issues"


class Clock:
    """A fake clock whose sleep advances time, so rate-limit waits take no real time."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def gh():
    with FakeGitHub() as server:
        yield server


def client(server: FakeGitHub, clock: Clock | None = None, **kw) -> GitHubClient:
    clock = clock or Clock()
    return GitHubClient("example/minitf", token="t0ken", api_url=server.url, sleep=clock.sleep, clock=clock.time, **kw)


def test_follows_link_headers_across_pages_and_sends_token(gh: FakeGitHub) -> None:
    page2 = f"{ISSUES}?page=2"
    gh.add(page2, Reply(body=[issue(3, "2024-01-03T00:00:00Z")]))
    gh.add(
        ISSUES,
        Reply(
            body=[issue(1, "2024-01-01T00:00:00Z"), issue(2, "2024-01-02T00:00:00Z")],
            headers={"Link": f'<{{base}}{page2}>; rel="next", <{{base}}{page2}>; rel="last"'},
        ),
    )
    with client(gh) as c:
        pages = list(c.issue_pages(since="2023-12-31T00:00:00Z"))
    assert [[i["number"] for i in p] for p in pages] == [[1, 2], [3]]
    assert "since=2023-12-31T00%3A00%3A00Z" in gh.log[0].path and "sort=updated" in gh.log[0].path
    assert gh.log[0].headers["authorization"] == "Bearer t0ken"
    assert gh.log[1].path == page2


def test_304_reuses_the_cached_page(gh: FakeGitHub) -> None:
    gh.add(
        ISSUES,
        Reply(body=[issue(7, "2024-01-01T00:00:00Z", title="cached")], headers={"ETag": 'W/"abc"'}),
        Reply(status=304, headers={"ETag": 'W/"abc"'}),
    )
    etags: dict[str, tuple[str, str]] = {}
    with client(gh, etags=etags) as c:
        first = list(c.issue_pages())
    with client(gh, etags=etags) as c:
        second = list(c.issue_pages())
        assert c.stats["not_modified"] == 1
    assert second == first and second[0][0]["title"] == "cached"
    assert gh.log[1].headers["if-none-match"] == 'W/"abc"'


def test_primary_rate_limit_waits_until_reset(gh: FakeGitHub) -> None:
    clock = Clock()
    reset = int(clock.now) + 120
    gh.add(
        ISSUES,
        Reply(
            403,
            {"message": "API rate limit exceeded"},
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        ),
        Reply(body=[issue(1, "2024-01-01T00:00:00Z")]),
    )
    with client(gh, clock) as c:
        pages = list(c.issue_pages())
    assert pages[0][0]["number"] == 1
    assert clock.now >= reset and sum(clock.slept) == pytest.approx(121, abs=1)


def test_secondary_rate_limit_honours_retry_after(gh: FakeGitHub) -> None:
    clock = Clock()
    gh.add(
        ISSUES,
        Reply(429, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "30"}),
        Reply(body=[]),
    )
    with client(gh, clock) as c:
        assert list(c.issue_pages()) == [[]]
    assert clock.slept == [30.0]


def test_a_rate_limit_wait_longer_than_allowed_raises(gh: FakeGitHub) -> None:
    gh.add(ISSUES, Reply(429, {"message": "secondary rate limit"}, {"Retry-After": "7200"}))
    with client(gh, max_wait_s=600) as c, pytest.raises(GitHubError, match="wait 7200 s"):
        list(c.issue_pages())


def test_5xx_is_retried_with_backoff_then_succeeds(gh: FakeGitHub) -> None:
    clock = Clock()
    gh.add(
        ISSUES, Reply(502, {"message": "Bad gateway"}), Reply(503, {}), Reply(body=[issue(4, "2024-01-01T00:00:00Z")])
    )
    with client(gh, clock) as c:
        pages = list(c.issue_pages())
        assert c.stats["retries"] == 2
    assert pages[0][0]["number"] == 4 and clock.slept == [2.0, 4.0]


def test_persistent_5xx_gives_up_with_a_clear_error(gh: FakeGitHub) -> None:
    gh.add(ISSUES, Reply(500, {}))
    with client(gh, max_retries=2) as c, pytest.raises(GitHubError, match="500 .* after 3 attempts"):
        list(c.issue_pages())


def test_malformed_page_raises_a_clear_error(gh: FakeGitHub) -> None:
    page2 = f"{ISSUES}?page=2"
    gh.add(page2, Reply(raw=b'[{"number": 3, "title": "cut off'))
    gh.add(ISSUES, Reply(body=[issue(1, "2024-01-01T00:00:00Z")], headers={"Link": f'<{{base}}{page2}>; rel="next"'}))
    with client(gh) as c:
        pages = c.issue_pages()
        assert next(pages)[0]["number"] == 1
        with pytest.raises(GitHubError, match="malformed page .*not JSON"):
            next(pages)


def test_an_item_missing_required_fields_is_malformed(gh: FakeGitHub) -> None:
    gh.add(ISSUES, Reply(body=[{"number": 1}]))
    with client(gh) as c, pytest.raises(GitHubError, match="missing title, updated_at"):
        list(c.issue_pages())


def test_bad_token_and_unknown_repo_are_user_errors(gh: FakeGitHub) -> None:
    gh.add(ISSUES, Reply(401, {"message": "Bad credentials"}))
    with client(gh) as c, pytest.raises(UserError, match="TQA_GITHUB_TOKEN"):
        list(c.issue_pages())
    with pytest.raises(UserError, match="owner/name"):
        GitHubClient("minitf")
