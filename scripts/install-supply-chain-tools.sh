#!/usr/bin/env bash
# Installs Sigstore's cosign and Anchore's syft (or only those named: `... cosign`), pinned, with
# `go install` into a cache folder
# (~/.cache/go-tools/bin unless SUPPLY_CHAIN_TOOLS_BIN says otherwise) and prints that folder, which
# belongs on PATH. A tool already there at its pinned version (as `go version -m` reads it from the
# binary) is kept. Both are long builds (about 4 minutes each on 2 cores, with a cold module cache);
# with internet, the projects' release binaries install in seconds instead (see the README).
set -euo pipefail

COSIGN_MODULE="github.com/sigstore/cosign/v3"
COSIGN_VERSION="v3.1.3"
SYFT_MODULE="github.com/anchore/syft"
SYFT_VERSION="v1.57.1"
bin="${SUPPLY_CHAIN_TOOLS_BIN:-$HOME/.cache/go-tools/bin}"

# Go's own installer puts it here, which a non-login shell's PATH may lack.
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"

installed() { # binary module version
  [[ -x "$1" ]] && command -v go >/dev/null && go version -m "$1" 2>/dev/null | grep -qE "^\s+mod\s+$2\s+$3\s"
}

wanted=("${@:-cosign syft}")
for spec in "cosign:$COSIGN_MODULE:$COSIGN_VERSION:cmd/cosign" "syft:$SYFT_MODULE:$SYFT_VERSION:cmd/syft"; do
  IFS=: read -r name module version path <<<"$spec"
  [[ " ${wanted[*]} " == *" $name "* ]] || continue
  installed "$bin/$name" "$module" "$version" && continue
  command -v go >/dev/null || { echo "install-supply-chain-tools: $name $version is not installed and Go is missing to build it (https://go.dev/doc/install)" >&2; exit 1; }
  echo "installing $name $version (go install; a few minutes)" >&2
  started=$SECONDS
  GOBIN="$bin" go install "$module/$path@$version"
  echo "installed $name $version in $((SECONDS - started)) s" >&2
done
echo "$bin"
