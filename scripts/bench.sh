#!/usr/bin/env bash
# Runs every benchmark; each writes its figures to bench-results/<name>.json and prints them.
# Needs what the tests need (Docker engine, local base image, the Pulumi CLI for `engine`, wrk for
# the backend throughput, Pebble for `tls`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
for name in "${@:-program promotion readiness backend engine switch remote tls supply-chain swarm}"; do
  for n in $name; do
    printf '\n== bench: %s\n' "$n"
    npx tsx "scripts/bench/$n.ts"
  done
done
