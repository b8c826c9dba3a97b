"""Configure provisioned hosts: run the Ansible playbooks through ansible-runner."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ml.errors import UserError
from ops.infra.paths import ANSIBLE_DIR, ENVIRONMENTS


class PlaybookResult(BaseModel):
    """What a playbook run did, per host: ok, changed and failed task counts (hosts with none are left out)."""

    status: str
    rc: int
    ok: dict[str, int]
    changed: dict[str, int]
    failures: dict[str, int]
    unreachable: dict[str, int]

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def run_playbook(
    playbook: str,
    inventory: Path | list[Path],
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    ansible_dir: Path = ANSIBLE_DIR,
    envvars: dict[str, str] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> PlaybookResult:
    """Run one playbook of ansible/ with ansible-runner; a failed run raises UserError naming the failed hosts."""
    import ansible_runner

    inventories = inventory if isinstance(inventory, list) else [inventory]
    for path in inventories:
        if not path.exists():
            raise UserError(f"Inventory {path} does not exist: run `tqa infra inventory` after `tqa infra apply`.")
    if not (ansible_dir / playbook).is_file():
        raise UserError(f"No playbook {playbook} in {ansible_dir}.")
    with tempfile.TemporaryDirectory(prefix="tqa-ansible-") as private:
        env = {
            "ANSIBLE_CONFIG": str(ansible_dir / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ansible_dir / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            # ansible-runner starts `ansible-playbook` by name: this interpreter's one first (no venv activation).
            "PATH": f"{Path(_ansible_playbook()).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.update(envvars or {})
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(ansible_dir),
            playbook=playbook,
            inventory=[str(p.resolve()) for p in inventories],
            extravars=extravars or {},
            limit=limit,
            envvars=env,
            quiet=True,
            event_handler=_event_printer(say),
        )
        stats = result.stats or {}
        output_tail = result.stdout.read()[-6000:] if result.rc != 0 else ""
    outcome = PlaybookResult(
        status=result.status,
        rc=result.rc,
        ok=dict(stats.get("ok", {})),
        changed=dict(stats.get("changed", {})),
        failures=dict(stats.get("failures", {})),
        unreachable=dict(stats.get("dark", {})),
    )
    if outcome.rc != 0 or outcome.failures or outcome.unreachable:
        bad = sorted(set(outcome.failures) | set(outcome.unreachable))
        if not bad:
            raise UserError(f"Playbook {playbook} {outcome.status} before any host ran: {output_tail.strip()}")
        raise UserError(f"Playbook {playbook} {outcome.status} on {', '.join(bad)}: see the task output above.")
    return outcome


def _ansible_playbook() -> str:
    """ansible-playbook of this interpreter's environment (the venv need not be activated), else from PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        raise UserError("ansible-playbook is not installed: install the infra extra (pip install -e '.[infra]').")
    return found


def _event_printer(say: Callable[[str], None]) -> Callable[[dict[str, Any]], bool]:
    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        if event.get("event") in {"runner_on_failed", "runner_on_unreachable"}:
            result = data.get("res", {})
            say(f"{data.get('host')}: {data.get('task')}: {result.get('msg') or result.get('stderr') or result}")
        elif event.get("event") == "playbook_on_task_start":
            say(f"task: {data.get('task')}")
        return True

    return handle


def configure(environment: str, playbook: str = "site.yml", limit: str | None = None, **kwargs: Any) -> PlaybookResult:
    """Apply the site playbook to one environment's inventory (ansible/inventory/<environment>)."""
    if environment not in ENVIRONMENTS:
        raise UserError(f"Unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}.")
    inventory = ANSIBLE_DIR / "inventory" / environment
    if not (inventory / "hosts.yml").is_file():
        raise UserError(
            f"{inventory / 'hosts.yml'} does not exist: run `tqa infra apply` then `tqa infra inventory {environment}`."
        )
    return run_playbook(playbook, inventory, limit=limit, **kwargs)
