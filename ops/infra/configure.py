"""Configure provisioned hosts: run the Ansible playbooks through ansible-runner."""

from __future__ import annotations

import os
import shlex
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
    cmdline: list[str] | None = None,
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
            cmdline=" ".join(shlex.quote(arg) for arg in cmdline) if cmdline else None,
            quiet=True,
            event_handler=_event_printer(say),
        )
        stats = result.stats or {}
        output_tail = ""
        if result.rc != 0:
            with result.stdout as stdout:
                output_tail = stdout.read()[-6000:]
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


def ssh_options(known_hosts: Path, workdir: Path, ssh_key: Path | None = None) -> dict[str, str]:
    """Environment for Ansible's ssh: host keys checked strictly against `known_hosts`, for the jump host too.

    One ssh configuration file carries the settings (`-F`), because ssh hands `-F`, not `-o`, to the ssh it starts
    for a ProxyJump; the user's own ~/.ssh/config still applies (keys, agent).
    """
    if not known_hosts.is_file():
        raise UserError(
            f"{known_hosts} does not exist: write every node's host key there (infra/README.md, step 'Host keys'); "
            "host keys are never accepted unseen."
        )
    config = workdir / "ssh_config"
    user_config = Path.home() / ".ssh" / "config"
    config.write_text(
        (f"Include {user_config}\n" if user_config.is_file() else "")
        + f"Host *\n  UserKnownHostsFile {known_hosts.resolve()}\n  StrictHostKeyChecking yes\n"
        + (f"  IdentityFile {ssh_key.resolve()}\n  IdentitiesOnly yes\n" if ssh_key else "")
    )
    return {"ANSIBLE_SSH_ARGS": f"-F {config} -o ControlMaster=auto -o ControlPersist=60s"}


def configure(
    environment: str,
    playbook: str = "site.yml",
    limit: str | None = None,
    secrets_file: Path | None = None,
    vault_password_file: Path | None = None,
    known_hosts: Path | None = None,
    ssh_key: Path | None = None,
    ansible_dir: Path = ANSIBLE_DIR,
    **kwargs: Any,
) -> PlaybookResult:
    """Apply the site playbook to one environment's inventory (ansible/inventory/<environment>), with its secrets
    (a YAML file, vault-encrypted or not, passed as `-e @file`) and host keys (strictly checked)."""
    if environment not in ENVIRONMENTS:
        raise UserError(f"Unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}.")
    inventory = ansible_dir / "inventory" / environment
    if not (inventory / "hosts.yml").is_file():
        raise UserError(
            f"{inventory / 'hosts.yml'} does not exist: run `tqa infra apply` then `tqa infra inventory {environment}`."
        )
    cmdline = []
    envvars = dict(kwargs.pop("envvars", None) or {})
    if secrets_file is not None:
        if not secrets_file.is_file():
            raise UserError(f"Secrets file {secrets_file} does not exist.")
        cmdline += ["-e", f"@{secrets_file.resolve()}"]
        if secrets_file.read_text(errors="ignore").startswith("$ANSIBLE_VAULT;"):
            from_env = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
            key_file = vault_password_file or (Path(from_env) if from_env else None)
            if key_file is None or not key_file.is_file():
                raise UserError(
                    f"{secrets_file} is vault-encrypted: pass --vault-password-file or set ANSIBLE_VAULT_PASSWORD_FILE."
                )
            envvars["ANSIBLE_VAULT_PASSWORD_FILE"] = str(key_file.resolve())
    with tempfile.TemporaryDirectory(prefix="tqa-ssh-") as workdir:
        if ssh_key is not None and not ssh_key.is_file():
            raise UserError(f"SSH key {ssh_key} does not exist.")
        envvars.update(ssh_options(known_hosts or inventory / "known_hosts", Path(workdir), ssh_key))
        return run_playbook(
            playbook, inventory, limit=limit, ansible_dir=ansible_dir, envvars=envvars, cmdline=cmdline, **kwargs
        )
