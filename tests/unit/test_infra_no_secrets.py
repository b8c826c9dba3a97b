"""No secret, IP address or password is hard-coded in the repository; workflows call make targets that exist."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Loopback, "any", and the documentation ranges (RFC 5737) that tests use on purpose.
ALLOWED_NETWORKS = [
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/32", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]
IPV4 = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w.])")
INFRA_PATHS = ("infra", "ansible", ".github", "ops/infra", "scripts/infra")
SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)\b[\w-]*(password|passwd|secret|api_?key|token|access_?key)[\w-]*\s*[:=]\s*["']?([^\s"'#,}\]]{6,})"""
)
# A value that is a reference, not a secret: template or workflow expressions, variables, placeholders.
REFERENCE = re.compile(r"^(`|\{\{|\$\{|\$|REPLACE_ME|secrets\.|vars\.|var\.|os\.|settings\.|self\.|none$|null$)", re.I)


def _tracked(*paths: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", *paths], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / p for p in out.decode().split("\0") if p]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".jpg", ".gz", ".whl", ".lock"}]


def test_no_hard_coded_ip_addresses() -> None:
    found = []
    for path in _tracked():
        if path.name == "constraints.txt":
            continue
        text = path.read_text(errors="ignore")
        for match in IPV4.finditer(text):
            try:
                address = ipaddress.ip_address(match.group(1))
            except ValueError:
                continue
            if not any(address in net for net in ALLOWED_NETWORKS):
                found.append(f"{path.relative_to(REPO)}: {match.group(1)}")
    assert found == []


def test_no_private_keys_anywhere() -> None:
    marker = "PRIVATE " + "KEY-----"  # split so this file does not match itself
    found = [str(p.relative_to(REPO)) for p in _tracked() if marker in p.read_text(errors="ignore")]
    assert found == []


def test_no_literal_secrets_in_infrastructure_code() -> None:
    found = []
    for path in _tracked(*INFRA_PATHS):
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            for match in SECRET_ASSIGNMENT.finditer(line):
                value = match.group(2)
                if not REFERENCE.match(value) and not value.startswith(("mlflow_", "weaviate_", "tqa_")):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


def test_secret_scan_catches_a_literal_password(tmp_path: Path) -> None:
    line = 'mlflow_db_password: "hunter2hunter2"'
    assert [m.group(2) for m in SECRET_ASSIGNMENT.finditer(line)] == ["hunter2hunter2"]
    assert not REFERENCE.match("hunter2hunter2")


def test_workflows_call_make_targets_that_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    defined = set(re.findall(r"^([a-zA-Z][\w-]*):", makefile, flags=re.M))
    used = set()
    for workflow in (REPO / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job.get("steps", []):
                used |= set(re.findall(r"\bmake ([a-z][\w-]*)", step.get("run", "")))
    assert used - defined == set()
