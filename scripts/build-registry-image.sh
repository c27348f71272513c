#!/usr/bin/env bash
# Builds the local container registry image that tests push to and pull from where the official
# `registry:2` image cannot be pulled: Debian's own `docker-registry` package (the CNCF distribution
# registry 2.8) on the local Python base. It runs as uid 10001 with nothing writable but its storage
# (a tmpfs or volume at /var/lib/docker-registry); its config, htpasswd file and TLS key pair are
# mounted at /etc/docker/registry when it starts (support/registry.ts writes them). Skipped when the
# image exists.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${REGISTRY_IMAGE:-local/registry:2-bookworm}"
base="${BASE_IMAGE:-local/python-base:3.11-bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "registry image $image present"
  exit 0
fi
bash scripts/build-base-image.sh >/dev/null
echo "building $image from Debian's docker-registry package"
# The package's maintainer script starts the service and creates a system user with whatever id is
# free: policy-rc.d keeps the service down during the build, and a user created first with a fixed
# id (which the script then keeps) lets a tmpfs be mounted with the right owner.
docker build --quiet --tag "$image" --build-arg BASE="$base" - >/dev/null <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && groupadd --system --gid 10001 docker-registry \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/docker-registry --no-create-home \
      --shell /usr/sbin/nologin docker-registry \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/sbin/policy-rc.d \
 && install -d -o 10001 -g 10001 -m 700 /var/lib/docker-registry \
 && docker-registry --version
USER 10001:10001
EXPOSE 5000
CMD ["docker-registry", "serve", "/etc/docker/registry/config.yml"]
DOCKERFILE
echo "built $image ($(docker run --rm "$image" docker-registry --version))"
