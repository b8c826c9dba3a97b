#!/usr/bin/env bash
# Builds a minimal Debian 12 root file system, once, as the throwaway target the Ansible role tests configure
# through Ansible's chroot connection. Cached as a tarball; each test run unpacks fresh copies of it.
# The mirror is the one this machine's apt already uses, so nothing new is reached.
set -euo pipefail

TOOLS_DIR="${TQA_TOOLS_DIR:-$HOME/.cache/tqa-tools}"
TARBALL="$TOOLS_DIR/debian12-target.tar"
SUITE=bookworm

if [[ -f "$TARBALL" ]]; then
  echo "build-target-rootfs: $TARBALL present"
  exit 0
fi
if [[ $EUID -ne 0 ]]; then
  echo "build-target-rootfs: debootstrap needs root" >&2
  exit 1
fi

mirror="$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
if [[ -z "$mirror" ]]; then
  mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
if [[ -z "$mirror" ]]; then
  echo "build-target-rootfs: no Debian mirror found in this machine's apt sources" >&2
  exit 1
fi

start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-apt,ca-certificates "$SUITE" "$work/root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# The target uses the same apt sources and settings as this machine.
rm -f "$work/root/etc/apt/sources.list"
cp /etc/apt/sources.list.d/*.sources "$work/root/etc/apt/sources.list.d/" 2>/dev/null || true
[[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$work/root/etc/apt/sources.list"
for conf in /etc/apt/apt.conf.d/*; do
  case "$(basename "$conf")" in docker-* | 20packagekit | 50appstream) ;; *) cp "$conf" "$work/root/etc/apt/apt.conf.d/" ;; esac
done
# No init system runs in a chroot: packages must not try to start services (as in container images).
printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
chmod 755 "$work/root/usr/sbin/policy-rc.d"
rm -rf "$work/root/var/cache/apt/archives/"*.deb
mkdir -p "$TOOLS_DIR"
tar -C "$work/root" -cf "$TARBALL.partial" .
mv "$TARBALL.partial" "$TARBALL"
echo "build-target-rootfs: $TARBALL built in $((SECONDS - start)) s ($(du -sh "$TARBALL" | cut -f1))"
