"""Alert rules and Grafana dashboards in ops/monitoring: promtool checks and unit-tests the rules, dashboards parse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "ops" / "monitoring"
RULES = MONITORING / "rules" / "tqa-people.yml"
RULE_TESTS = MONITORING / "rules" / "tqa-people.test.yml"


def promtool(*args: str, cwd: Path = MONITORING / "rules") -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing; run `make release-tools` (Debian's prometheus package ships it)."
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


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
