#!/usr/bin/env bash
# Builds the infrastructure tools CI and developers run (OpenTofu, the OpenStack provider, actionlint) from the
# Go module proxy into a cache outside the repository, and installs the Debian packages the role tests use.
# Idempotent: a tool already in the cache is skipped, so a second run takes seconds.
set -euo pipefail

TOFU_VERSION="${TOFU_VERSION:-v1.10.10}"
OPENSTACK_PROVIDER_VERSION="${OPENSTACK_PROVIDER_VERSION:-v3.4.0}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
TOOLS_DIR="${TQA_TOOLS_DIR:-$HOME/.cache/tqa-tools}"
# systemd-container: systemd-nspawn boots the Ansible test targets (tests/support/nspawn.py).
# debian-archive-keyring: debootstrap checks Debian's signatures on an Ubuntu runner too.
DEBIAN_PACKAGES=(debootstrap debian-archive-keyring shellcheck systemd-container)

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTELEMETRY=off
mkdir -p "$TOOLS_DIR/bin"

log() { printf 'install-tools: %s\n' "$*"; }

# Builds a main package from a module's source as the main module, so its own replace directives apply
# (OpenTofu replaces hcl/v2 with its fork; `go install module@version` refuses modules with replace directives).
build_from_module() {
  local module="$1" version="$2" package="$3" out="$4"
  local src work
  src="$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$src" ]]; then
    log "could not download $module@$version from the Go module proxy" >&2
    return 1
  fi
  work="$(mktemp -d)"
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out.partial" "$package")
  mv "$out.partial" "$out"
  rm -rf "$work"
}

timed() {
  local what="$1"
  shift
  local start=$SECONDS
  "$@"
  log "$what built in $((SECONDS - start)) s"
}

tofu_bin="$TOOLS_DIR/tofu-$TOFU_VERSION/tofu"
if [[ -x "$tofu_bin" ]]; then
  log "tofu $TOFU_VERSION present: $tofu_bin"
else
  mkdir -p "$(dirname "$tofu_bin")"
  timed "tofu $TOFU_VERSION" build_from_module github.com/opentofu/opentofu "$TOFU_VERSION" ./cmd/tofu "$tofu_bin"
fi
ln -sfn "$tofu_bin" "$TOOLS_DIR/bin/tofu"

# The provider goes into a filesystem mirror laid out as `tofu init -plugin-dir` expects, under both registry
# host names, so the same mirror serves OpenTofu and Terraform.
provider_version="${OPENSTACK_PROVIDER_VERSION#v}"
provider_build="$TOOLS_DIR/terraform-provider-openstack-$OPENSTACK_PROVIDER_VERSION/terraform-provider-openstack"
if [[ -x "$provider_build" ]]; then
  log "terraform-provider-openstack $OPENSTACK_PROVIDER_VERSION present: $provider_build"
else
  mkdir -p "$(dirname "$provider_build")"
  timed "terraform-provider-openstack $OPENSTACK_PROVIDER_VERSION" build_from_module \
    github.com/terraform-provider-openstack/terraform-provider-openstack/v3 "$OPENSTACK_PROVIDER_VERSION" . \
    "$provider_build"
fi
for host in registry.opentofu.org registry.terraform.io; do
  dir="$TOOLS_DIR/plugins/$host/terraform-provider-openstack/openstack/$provider_version/linux_amd64"
  mkdir -p "$dir"
  ln -f "$provider_build" "$dir/terraform-provider-openstack_v$provider_version"
done

# CLI configuration: providers come from the mirror only, so init never reaches a registry.
cat >"$TOOLS_DIR/tofurc.partial" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$TOOLS_DIR/plugins"
    include = ["registry.opentofu.org/terraform-provider-openstack/openstack", "registry.terraform.io/terraform-provider-openstack/openstack"]
  }
}
RC
mv "$TOOLS_DIR/tofurc.partial" "$TOOLS_DIR/tofurc"

actionlint_bin="$TOOLS_DIR/actionlint-$ACTIONLINT_VERSION/actionlint"
if [[ -x "$actionlint_bin" ]]; then
  log "actionlint $ACTIONLINT_VERSION present: $actionlint_bin"
else
  mkdir -p "$(dirname "$actionlint_bin")"
  timed "actionlint $ACTIONLINT_VERSION" env GOBIN="$(dirname "$actionlint_bin")" \
    go install -trimpath "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
ln -sfn "$actionlint_bin" "$TOOLS_DIR/bin/actionlint"

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ "${TQA_SKIP_APT:-0}" == 1 ]]; then
    log "Debian packages missing and TQA_SKIP_APT=1: ${missing[*]}" >&2
  else
    log "installing Debian packages: ${missing[*]}"
    # As root here; through sudo on a GitHub runner, whose user may use it without a password.
    sudo=()
    [[ $EUID -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  log "Debian packages present: ${DEBIAN_PACKAGES[*]}"
fi

log "tools in $TOOLS_DIR/bin; provider mirror in $TOOLS_DIR/plugins"
