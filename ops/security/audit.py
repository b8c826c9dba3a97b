"""pip-audit over the pinned dependencies (`constraints.txt`), judged by the project's policy.

The audit fails on every known vulnerability of a pinned version unless `security/audit-policy.yml` accepts it with a
reason and a date after which it fails again, and on every dependency pip-audit could not audit: offline, pip-audit
skips each package ("not found on PyPI") and still reports "No known vulnerabilities found" with exit status 0, which
must never read as a clean audit. Runs only what the standard library, PyYAML and pip-audit provide, so CI can run it
from a small venv (`make audit`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

PIP_AUDIT_VERSION = "2.10.1"


@dataclass(frozen=True)
class Verdict:
    problems: list[str]
    notes: list[str]
    audited: int

    @property
    def ok(self) -> bool:
        return not self.problems


def load_policy(path: Path) -> list[dict[str, Any]]:
    """The accepted vulnerabilities: each `{id, reason, until}`; a malformed entry is a `ValueError` in one sentence."""
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("ignore") or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: `ignore` must be a list of {{id, reason, until}} entries.")
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not entry.get("id") or not str(entry.get("reason") or "").strip():
            raise ValueError(f"{path}: ignore entry {n} needs an `id` and a `reason`.")
        if not isinstance(entry.get("until"), date):
            raise ValueError(f"{path}: ignore entry {n} ({entry['id']}) needs `until` as a date (YYYY-MM-DD).")
    return entries


def judge(report: dict[str, Any], policy: list[dict[str, Any]], today: date) -> Verdict:
    """Problems (the audit fails) and notes (it passes) for a pip-audit JSON report under the policy."""
    accepted = {str(e["id"]): e for e in policy}
    problems: list[str] = []
    notes: list[str] = []
    reported: set[str] = set()
    audited = 0
    for dep in report.get("dependencies", []):
        name, version = dep.get("name", "?"), dep.get("version", "")
        if dep.get("skip_reason"):
            problems.append(f"{name} was not audited: {dep['skip_reason']}")
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            ids = [str(vuln.get("id", ""))] + [str(a) for a in vuln.get("aliases", [])]
            reported.update(ids)
            entry = next((accepted[i] for i in ids if i in accepted), None)
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            label = f"{name} {version}: {ids[0]}" + (f" ({', '.join(ids[1:])})" if len(ids) > 1 else "")
            if entry is None:
                problems.append(
                    f"{label}, fixed in {fixed}; raise the pin in constraints.txt, or accept it in "
                    "security/audit-policy.yml with a reason and an expiry date."
                )
            elif entry["until"] < today:
                problems.append(f"{label}: the policy accepted it until {entry['until']}; look at it again.")
            else:
                notes.append(f"{label}: accepted until {entry['until']} ({entry['reason']}).")
    for key in accepted:
        if key not in reported:
            notes.append(f"{key} is accepted in the policy but no longer reported; the entry can go.")
    if not report.get("dependencies"):
        problems.append("The report lists no dependencies: nothing was audited.")
    return Verdict(problems, notes, audited)


def run_pip_audit(requirements: Path) -> dict[str, Any]:
    """pip-audit's JSON report for the pinned `requirements`, audited as pinned (no resolution, nothing installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip"]
        cmd += ["--format", "json", "--output", str(out), "--progress-spinner", "off"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if "No module named pip_audit" in done.stderr:
            raise RuntimeError(f"pip-audit is not installed here: pip install pip-audit=={PIP_AUDIT_VERSION}")
        if not out.is_file():
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"pip-audit wrote no report (exit status {done.returncode}): {tail[0]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--policy", type=Path, default=Path("security/audit-policy.yml"))
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON report instead of running pip-audit")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.policy)
        report = json.loads(args.report.read_text()) if args.report else run_pip_audit(args.requirements)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    verdict = judge(report, policy, date.today())
    for note in verdict.notes:
        print(f"note: {note}")
    for problem in verdict.problems[:50]:
        print(f"FAIL: {problem}")
    if len(verdict.problems) > 50:
        print(f"FAIL: ... and {len(verdict.problems) - 50} more")
    print(f"audit: {verdict.audited} pinned packages audited, {len(verdict.problems)} problems")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
