"""The dependency audit's policy: unaudited packages and unaccepted vulnerabilities fail, accepted ones expire."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ops.security.audit import judge, load_policy, main

TODAY = date(2026, 11, 30)
# What pip-audit 2.10.1 writes when PyPI's per-version JSON API cannot be reached (recorded on this machine): every
# package skipped, "No known vulnerabilities found" on the terminal and exit status 0.
OFFLINE = {
    "dependencies": [
        {"name": "requests", "skip_reason": "Dependency not found on PyPI and could not be audited: requests (2.25.0)"}
    ],
    "fixes": [],
}
FOUND = {
    "dependencies": [
        {"name": "numpy", "version": "2.2.6", "vulns": []},
        {
            "name": "requests",
            "version": "2.25.0",
            "vulns": [{"id": "PYSEC-2023-74", "aliases": ["CVE-2023-32681"], "fix_versions": ["2.31.0"]}],
        },
    ],
    "fixes": [],
}


def test_a_report_that_audited_nothing_never_passes() -> None:
    verdict = judge(OFFLINE, [], TODAY)
    assert not verdict.ok and verdict.audited == 0
    assert verdict.problems == [
        "requests was not audited: Dependency not found on PyPI and could not be audited: requests (2.25.0)"
    ]
    assert not judge({"dependencies": [], "fixes": []}, [], TODAY).ok


def test_a_vulnerability_fails_until_the_policy_accepts_it_and_again_when_that_expires() -> None:
    verdict = judge(FOUND, [], TODAY)
    assert not verdict.ok and verdict.audited == 2
    assert "requests 2.25.0: PYSEC-2023-74 (CVE-2023-32681), fixed in 2.31.0" in verdict.problems[0]
    accepted = [{"id": "CVE-2023-32681", "reason": "proxies are never used", "until": date(2027, 1, 31)}]
    assert judge(FOUND, accepted, TODAY).ok  # an alias names the advisory as well as its id
    expired = [dict(accepted[0], until=date(2026, 11, 1))]
    assert "accepted it until 2026-11-01" in judge(FOUND, expired, TODAY).problems[0]
    stale = judge({"dependencies": FOUND["dependencies"][:1]}, accepted, TODAY)
    assert stale.ok and "no longer reported" in stale.notes[0]


def test_the_policy_file_is_checked_and_the_shipped_one_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_policy(Path(__file__).parents[2] / "security" / "audit-policy.yml") == []
    bad = tmp_path / "policy.yml"
    bad.write_text("ignore:\n  - id: PYSEC-1\n    reason: fine\n")
    with pytest.raises(ValueError, match="needs `until` as a date"):
        load_policy(bad)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(OFFLINE))
    assert main(["--report", str(report), "--policy", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    good = tmp_path / "good.yml"
    good.write_text("ignore: []\n")
    assert main(["--report", str(report), "--policy", str(good)]) == 1
    assert "requests was not audited" in capsys.readouterr().out
