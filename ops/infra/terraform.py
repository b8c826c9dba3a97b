"""Drive `infra/` with OpenTofu (or Terraform) through python-terraform: init, plan, apply, destroy, inventory.

Environments are apart: each has its own workspace (its own state: `terraform.tfstate.d/<env>/` locally, its own
key under `env:/<env>/` in the S3 backend, with the backend's lock), its own variables file (`infra/<env>.tfvars`)
and its own lease file (`infra/lease-<env>.tfvars.json`). A variables file naming another environment is refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ml.errors import UserError
from ops.infra.paths import ANSIBLE_DIR, ENVIRONMENTS, INFRA_DIR, cli_config, tofu_binary


def _check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise UserError(f"Unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}.")


ENVIRONMENT_LINE = re.compile(r'^\s*environment\s*=\s*"([^"]*)"', re.MULTILINE)


class InfraRunner:
    """One environment of infra/: its workspace, variables file and lease; each command raises UserError."""

    def __init__(
        self,
        environment: str,
        var_file: Path | None = None,
        infra_dir: Path = INFRA_DIR,
        binary: Path | None = None,
        need_var_file: bool = True,
    ) -> None:
        from python_terraform import Terraform

        _check_environment(environment)
        self.environment = environment
        self.infra_dir = infra_dir
        var_file = var_file or infra_dir / f"{environment}.tfvars"
        if need_var_file:
            if not var_file.is_file():
                raise UserError(f"{var_file} does not exist: copy infra/sample.tfvars to it and fill it in.")
            named = ENVIRONMENT_LINE.search(var_file.read_text())
            if named and named.group(1) != environment:
                raise UserError(
                    f"{var_file} is for environment {named.group(1)!r}, not {environment!r}: "
                    f"pass infra/{environment}.tfvars."
                )
        self.var_file = var_file if need_var_file else None
        os.environ.setdefault("CHECKPOINT_DISABLE", "1")
        config = cli_config()
        configured = os.environ.get("TF_CLI_CONFIG_FILE")
        # A CLI configuration named but missing would send tofu to the registry: use the local mirror's instead.
        if config is not None and (not configured or not Path(configured).is_file()):
            os.environ["TF_CLI_CONFIG_FILE"] = str(config)
        self._tf = Terraform(working_dir=str(infra_dir), terraform_bin_path=str(binary or tofu_binary()))

    def _run(self, what: str, *args: str, **options: object) -> str:
        code, out, err = self._tf.cmd(*args, **options)
        if code != 0:
            detail = (err or out or "").strip().splitlines()
            raise UserError(f"`{what}` failed: {' '.join(line.strip('│ ') for line in detail[-6:])}")
        return out

    def init(self) -> str:
        """`tofu init` (local state, or the backend of infra/backend.tf), then this environment's workspace."""
        from python_terraform import IsFlagged

        # The workspace is named per process (TF_WORKSPACE), never left selected in infra/.terraform, so two
        # commands for two environments cannot pick up each other's selection.
        os.environ.pop("TF_WORKSPACE", None)
        out = self._run("tofu init", "init", input=False, no_color=IsFlagged)
        listed = self._run("tofu workspace list", "workspace", "list")
        if self.environment not in [line.strip(" *") for line in listed.splitlines()]:
            self._run("tofu workspace new", "workspace", "new", self.environment)
        os.environ["TF_WORKSPACE"] = self.environment
        return out

    def plan(self, out: Path | None = None) -> tuple[bool, str]:
        """`tofu plan`; returns whether anything would change and the plan text."""
        from python_terraform import IsFlagged

        code, stdout, stderr = self._tf.cmd(
            "plan",
            detailed_exitcode=IsFlagged,
            out=str(out) if out else None,
            input=False,
            no_color=IsFlagged,
            var_file=self._var_files(),
        )
        if code not in (0, 2):
            detail = (stderr or stdout or "").strip().splitlines()
            raise UserError(f"`tofu plan` failed: {' '.join(line.strip('│ ') for line in detail[-6:])}")
        return code == 2, stdout

    def apply(self, targets: list[str] | None = None) -> str:
        """`tofu apply -auto-approve` with the variables files (only `targets` when given)."""
        from python_terraform import IsFlagged

        return self._run(
            "tofu apply",
            "apply",
            auto_approve=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var_file=self._var_files(),
            target=targets or None,
        )

    def destroy(self) -> str:
        """`tofu destroy -auto-approve` with the variables file."""
        from python_terraform import IsFlagged

        return self._run(
            "tofu destroy",
            "destroy",
            auto_approve=IsFlagged,
            input=False,
            no_color=IsFlagged,
            var_file=self._var_files(),
        )

    def _var_files(self) -> list[str]:
        files = [self.var_file] if self.var_file else []
        lease = self.infra_dir / f"lease-{self.environment}.tfvars.json"
        if lease.is_file():
            files.append(lease)
        return [str(f.resolve()) for f in files]

    def workspace(self) -> str:
        """The workspace (state) tofu is on now."""
        return self._run("tofu workspace show", "workspace", "show").strip()

    def inventory(self, ansible_dir: Path = ANSIBLE_DIR) -> Path:
        """Write this environment's `ansible_inventory` output to ansible/inventory/<environment>/hosts.yml."""
        from python_terraform import IsFlagged

        environment = self.environment
        self.init()
        out = self._run("tofu output", "output", "-json", no_color=IsFlagged)
        outputs = json.loads(out)
        if "ansible_inventory" not in outputs:
            raise UserError("Terraform state has no ansible_inventory output: run `tqa infra apply` first.")
        path = ansible_dir / "inventory" / environment / "hosts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs["ansible_inventory"]["value"])
        return path
