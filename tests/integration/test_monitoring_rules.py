"""Alert rules and Grafana dashboards in ops/monitoring: promtool checks and unit-tests the rules, dashboards parse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "ops" / "monitoring"
RULES = MONITORING / "rules" / "tqa-people.yml"
RULE_TESTS = MONITORING / "rules" / "tqa-people.test.yml"
# Every rule file (the monitoring role installs these, see ansible/roles/monitoring) has its promtool unit test.
RULE_FILES = sorted(p for p in (MONITORING / "rules").glob("*.yml") if not p.name.endswith(".test.yml"))


def promtool(*args: str, cwd: Path = MONITORING / "rules") -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing; run `make release-tools` (Debian's prometheus package ships it)."
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.stem)
def test_rules_are_valid_and_their_unit_tests_pass(rules: Path) -> None:
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = rules.with_suffix(".test.yml")
    assert tests.is_file(), f"{rules.name} has no promtool unit test {tests.name}"
    tested = promtool("test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert of the file is exercised by its test.
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(tests.read_text())["tests"]
    tested_alerts = {a["alertname"] for case in cases for a in case.get("alert_rule_test", [])}
    assert alerts <= tested_alerts, f"alerts without a promtool case: {sorted(alerts - tested_alerts)}"


def test_the_issue_s_alerts_exist() -> None:
    alerts = {r["alert"] for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]}
    assert {
        "TqaAskP95AboveTarget",
        "TqaErrorRateAboveTarget",
        "TqaThumbsDownSpike",
        "WeaviateNodeDown",
        "TqaRunnerDown",
    } <= alerts


def test_a_runner_that_stays_down_is_caught_by_the_rule_tests(tmp_path: Path) -> None:
    """Guard: a test case claiming a down runner raises no alert fails."""
    rules = MONITORING / "rules" / "tqa-availability.yml"
    tests = rules.with_suffix(".test.yml")
    shutil.copy(rules, tmp_path / rules.name)
    cases = yaml.safe_load(tests.read_text())
    firing = [
        a
        for case in cases["tests"]
        for a in case["alert_rule_test"]
        if a["alertname"] == "TqaRunnerDown" and a["exp_alerts"]
    ]
    assert firing
    for a in firing:
        a["exp_alerts"] = []
    wrong = yaml.safe_dump(cases)
    assert wrong != tests.read_text()
    (tmp_path / tests.name).write_text(wrong)
    tested = promtool("test", "rules", tests.name, cwd=tmp_path)
    assert tested.returncode != 0 and "TqaRunnerDown" in tested.stdout + tested.stderr


def test_a_wrong_expectation_fails_the_rule_tests(tmp_path: Path) -> None:
    """Guard: the rule tests can fail (a thumbs-down share of 75% is not reported as 50%)."""
    shutil.copy(RULES, tmp_path / RULES.name)
    wrong = RULE_TESTS.read_text().replace("75% of the last hour", "50% of the last hour")
    assert wrong != RULE_TESTS.read_text()
    (tmp_path / RULE_TESTS.name).write_text(wrong)
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and "TqaThumbsDownSpike" in tested.stdout + tested.stderr


def test_dashboards_are_provisionable_json_with_a_query_per_panel() -> None:
    dashboards = sorted((MONITORING / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            assert panel["targets"], f"{path.name}: panel {panel['title']!r} has no query"
            assert all(t["expr"].strip() for t in panel["targets"])
