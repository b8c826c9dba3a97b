#!/usr/bin/env bash
# Installs what releases run on one machine, from Debian packages: HAProxy splits traffic between the serving
# slots, Prometheus feeds the canary analysis, PostgreSQL backs the tests' MLflow server as it does in deployments.
# Debian's Prometheus (2.42) installs in seconds; building Prometheus from the Go module proxy took over 20 minutes
# on a 2-core machine, too long for CI.
# Idempotent: present tools are kept, so a second run takes a second.
set -euo pipefail

log() { printf 'release-tools: %s\n' "$*"; }

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# PostgreSQL, for the tests' MLflow server on the backend store deployments use (tests/support/postgres.py).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  # The packages start their system services where systemd runs; the release starts its own instances.
  for service in "${missing[@]}"; do
    "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
  done
fi
log "haproxy: $(command -v haproxy), prometheus: $(command -v prometheus), postgresql: $(compgen -G '/usr/lib/postgresql/*/bin/initdb')"
