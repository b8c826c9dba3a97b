#!/usr/bin/env bash
# Builds the RAG service and Qwen runner bentos offline, versioned by the git SHA (plus "-dirty" for uncommitted
# changes), exports them to dist/bento/ (or $BENTO_OUT) and prints their tags; with a file argument, also writes the
# RAG tag there.
set -euo pipefail

tag_file="${1:-}"
bin="${VENV:-.venv}/bin"
sha="$(git rev-parse --short=12 HEAD)"
git diff --quiet HEAD -- ml serving 2>/dev/null || sha="$sha-dirty"
export BENTOML_HOME="${BENTOML_HOME:-$PWD/.tqa/bentoml}" BENTOML_DO_NOT_TRACK=true
out="${BENTO_OUT:-dist/bento}"
mkdir -p "$out"

build() {
  local file="$1" name="$2"
  "$bin/python" -m bentoml build -f "$file" --version "$sha" . >/dev/null
  "$bin/python" -m bentoml export "$name:$sha" "$(cd "$out" && pwd)/$name-$sha.bento" >/dev/null
  echo "$name:$sha"
}

rag="$(build ops/release/bentofile.rag.yaml tqa-rag)"
runner="$(build serving/bentofile.runner.yaml tqa-qwen-runner)"
printf '%s\n%s\n' "$rag" "$runner"
if [[ -n "$tag_file" ]]; then
  printf '%s\n' "$rag" >"$tag_file"
fi
