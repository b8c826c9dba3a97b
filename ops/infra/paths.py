"""Where the infrastructure code and the tools built by scripts/infra/install-tools.sh live."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ml.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
ANSIBLE_DIR = REPO_ROOT / "ansible"
ENVIRONMENTS = ("staging", "canary", "production")


def tools_dir() -> Path:
    """The tool cache: TQA_TOOLS_DIR, else ~/.cache/tqa-tools (the install script's default)."""
    configured = os.environ.get("TQA_TOOLS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tqa-tools"


def tofu_binary() -> Path:
    """OpenTofu from the tool cache, else `tofu` or `terraform` on PATH."""
    cached = tools_dir() / "bin" / "tofu"
    if cached.exists():
        return cached
    for name in ("tofu", "terraform"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise UserError(
        "Neither OpenTofu nor Terraform was found: run `make infra-tools` (scripts/infra/install-tools.sh)."
    )


def cli_config() -> Path | None:
    """The CLI configuration that points provider installation at the local mirror, when it exists."""
    path = tools_dir() / "tofurc"
    return path if path.is_file() else None
