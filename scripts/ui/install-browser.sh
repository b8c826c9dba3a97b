#!/usr/bin/env bash
# Debian packages the tests of the people's side need (idempotent): headless Chromium and its WebDriver for the web
# page, and Prometheus (with promtool) to run the dashboard queries and alert-rule tests in ops/monitoring.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]} == 0)); then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core >/dev/null
# The prometheus package starts a system service where systemd runs; tests start their own instances.
$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
