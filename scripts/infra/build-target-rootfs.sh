#!/usr/bin/env bash
# Builds a minimal Debian 12 root file system, once, as the throwaway target the Ansible role tests configure:
# with systemd, D-Bus and OpenSSH, so a copy boots under `systemd-nspawn --boot` and Ansible reaches it over SSH
# like a VM (the chroot-connection test uses it too). Cached as a tarball; each test run unpacks fresh copies.
# The mirror is the one this machine's apt already uses, so nothing new is reached.
set -euo pipefail

TOOLS_DIR="${TQA_TOOLS_DIR:-$HOME/.cache/tqa-tools}"
TARBALL="$TOOLS_DIR/debian12-systemd-target.tar"
SUITE=bookworm

if [[ -f "$TARBALL" ]]; then
  echo "build-target-rootfs: $TARBALL present"
  exit 0
fi
if [[ $EUID -ne 0 ]]; then
  # debootstrap needs root: a GitHub runner's user has password-less sudo.
  exec sudo TQA_TOOLS_DIR="$TOOLS_DIR" TQA_DEBIAN_MIRROR="${TQA_DEBIAN_MIRROR:-}" bash "$0" "$@"
fi

# The mirror: TQA_DEBIAN_MIRROR, else the one this Debian machine's apt already uses (nothing new is reached),
# else Debian's own (an Ubuntu runner), checked against debian-archive-keyring.
mirror="${TQA_DEBIAN_MIRROR:-}"
host_sources=0
if [[ -z "$mirror" ]]; then
  mirror="$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
  [[ -z "$mirror" ]] && mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "$mirror" ]] && host_sources=1
fi
mirror="${mirror:-http://deb.debian.org/debian}"
keyring=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debootstrap "${keyring[@]}" --variant=minbase --include=python3,python3-apt,ca-certificates,systemd,systemd-sysv,dbus,openssh-server,iproute2 "$SUITE" "$work/root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
if ((host_sources)); then
  # The target uses the same apt sources and settings as this (Debian) machine.
  rm -f "$work/root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$work/root/etc/apt/sources.list.d/" 2>/dev/null || true
  [[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$work/root/etc/apt/sources.list"
  for conf in /etc/apt/apt.conf.d/*; do
    case "$(basename "$conf")" in docker-* | 20packagekit | 50appstream) ;; *) cp "$conf" "$work/root/etc/apt/apt.conf.d/" ;; esac
  done
else
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" >"$work/root/etc/apt/sources.list"
fi
# Packages must not start services while they install (as in container images): the roles start what they
# install through systemd, which is what the tests check.
printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
chmod 755 "$work/root/usr/sbin/policy-rc.d"
rm -rf "$work/root/var/cache/apt/archives/"*.deb
mkdir -p "$TOOLS_DIR"
tar -C "$work/root" -cf "$TARBALL.partial" .
mv "$TARBALL.partial" "$TARBALL"
echo "build-target-rootfs: $TARBALL built in $((SECONDS - start)) s ($(du -sh "$TARBALL" | cut -f1))"
