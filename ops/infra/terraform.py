"""Drive `infra/` with OpenTofu (or Terraform) through python-terraform: init, plan, apply, destroy, inventory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ml.errors import UserError
from ops.infra.paths import ANSIBLE_DIR, ENVIRONMENTS, INFRA_DIR, cli_config, tofu_binary


def _check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise UserError(f"Unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}.")


class InfraRunner:
    """One Terraform working directory and variables file; each command raises UserError with tofu's message."""

    def __init__(self, var_file: Path | None, infra_dir: Path = INFRA_DIR, binary: Path | None = None) -> None:
        from python_terraform import Terraform

        if var_file is not None and not var_file.is_file():
            raise UserError(f"{var_file} does not exist: copy infra/sample.tfvars and fill it in.")
        self.infra_dir = infra_dir
        self.var_file = var_file
        os.environ.setdefault("CHECKPOINT_DISABLE", "1")
        config = cli_config()
        if config is not None:
            os.environ.setdefault("TF_CLI_CONFIG_FILE", str(config))
        self._tf = Terraform(
            working_dir=str(infra_dir),
            terraform_bin_path=str(binary or tofu_binary()),
            var_file=str(var_file.resolve()) if var_file else None,
        )

    def _run(self, what: str, *args: str, **options: object) -> str:
        code, out, err = self._tf.cmd(*args, **options)
        if code != 0:
            detail = (err or out or "").strip().splitlines()
            raise UserError(f"`{what}` failed: {' '.join(line.strip('│ ') for line in detail[-6:])}")
        return out

    def init(self) -> str:
        """`tofu init`: local state, or the remote backend of infra/backend.tf when present (see infra/README.md)."""
        from python_terraform import IsFlagged

        return self._run("tofu init", "init", input=False, no_color=IsFlagged)

    def plan(self, out: Path | None = None) -> tuple[bool, str]:
        """`tofu plan`; returns whether anything would change and the plan text."""
        from python_terraform import IsFlagged

        code, stdout, stderr = self._tf.plan(
            detailed_exitcode=IsFlagged, out=str(out) if out else None, input=False, no_color=IsFlagged
        )
        if code not in (0, 2):
            detail = (stderr or stdout or "").strip().splitlines()
            raise UserError(f"`tofu plan` failed: {' '.join(line.strip('│ ') for line in detail[-6:])}")
        return code == 2, stdout

    def apply(self) -> str:
        """`tofu apply -auto-approve` with the variables file."""
        from python_terraform import IsFlagged

        return self._run(
            "tofu apply", "apply", auto_approve=IsFlagged, input=False, no_color=IsFlagged, var_file=self._var_files()
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
        return [str(self.var_file.resolve())] if self.var_file else []

    def inventory(self, environment: str, ansible_dir: Path = ANSIBLE_DIR) -> Path:
        """Write the `ansible_inventory` output to ansible/inventory/<environment>/hosts.yml."""
        from python_terraform import IsFlagged

        _check_environment(environment)
        out = self._run("tofu output", "output", "-json", no_color=IsFlagged)
        outputs = json.loads(out)
        if "ansible_inventory" not in outputs:
            raise UserError("Terraform state has no ansible_inventory output: run `tqa infra apply` first.")
        path = ansible_dir / "inventory" / environment / "hosts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs["ansible_inventory"]["value"])
        return path
