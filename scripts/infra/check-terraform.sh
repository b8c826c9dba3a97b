#!/usr/bin/env bash
# fmt -check, validate and the mocked-provider .tftest.hcl tests of infra/ and each of its modules, with the
# OpenTofu binary and OpenStack provider that install-tools.sh built. Reaches no network: providers come only
# from the local filesystem mirror.
set -euo pipefail
cd "$(dirname "$0")/../../infra"

TOOLS_DIR="${TQA_TOOLS_DIR:-$HOME/.cache/tqa-tools}"
export PATH="$TOOLS_DIR/bin:$PATH" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_CLI_CONFIG_FILE="$TOOLS_DIR/tofurc"

tofu version
tofu fmt -check -recursive -diff .
for dir in . modules/network modules/compute modules/storage; do
  echo "== $dir"
  (
    cd "$dir"
    tofu init -backend=false -input=false -no-color >/dev/null
    tofu validate -no-color
    tofu test -no-color
  )
done
