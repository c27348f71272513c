#!/usr/bin/env bash
# Builds the local Caddy 2 image that tests and local runs pass as `proxy.image` where the official
# `caddy` image cannot be pulled: Debian's own `caddy` package on the local Python base (which
# trusts this machine's CA certificates and knows its Debian mirror). Skipped when the image exists.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${PROXY_IMAGE:-local/caddy:2-bookworm}"
base="${BASE_IMAGE:-local/python-base:3.11-bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "proxy image $image present"
  exit 0
fi
bash scripts/build-base-image.sh >/dev/null
echo "building $image from Debian's caddy package"
# The official image's layout: config and data under /config and /data, caddy on PATH, port 80
# unused (the program listens on an unprivileged port of its own).
docker build --quiet --tag "$image" --build-arg BASE="$base" - >/dev/null <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy >/dev/null \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /config /data \
 && caddy version
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
DOCKERFILE
echo "built $image ($(docker run --rm "$image" caddy version | head -1))"
