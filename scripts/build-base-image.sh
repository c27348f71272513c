#!/usr/bin/env bash
# Builds the local Python base image that tests and local runs pass as PYTHON_BASE: nothing can be
# pulled from a container registry here, so a minimal Debian bookworm with python3 and venv is
# bootstrapped from the machine's own Debian mirror and imported. Skipped when the image exists.
set -euo pipefail
image="${BASE_IMAGE:-local/python-base:3.11-bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image present"
  exit 0
fi
# The mirror is the one this machine's apt already uses (one-line or deb822 sources).
mirror="$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) \
  | grep -oE '^(URIs:|deb) +https?://[^ ]+' | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d /tmp/python-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "bootstrapping $image from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
  || { tail -30 /tmp/debootstrap.log; exit 1; }
# Builds inside containers reach the package registries through the same TLS path as this
# machine, so the image trusts the CA certificates this machine added to its own store.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
# Trim what a runtime base never needs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
# mktemp made the root 0700, and tar records that as the image's own `/`: storage drivers that copy
# the layer's root (vfs) would then hide every file from a non-root user.
chmod 755 "$root"
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$image" >/dev/null
echo "built $image"
