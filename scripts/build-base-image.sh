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
# The mirror is the one this machine's apt already uses.
mirror="$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | awk '{print $2}' | grep -E '/debian/?$' | head -1)"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d /tmp/python-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "bootstrapping $image from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
  || { tail -30 /tmp/debootstrap.log; exit 1; }
# Trim what a runtime base never needs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$image" >/dev/null
echo "built $image"
