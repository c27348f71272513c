#!/usr/bin/env bash
# Every check and test of the project, TypeScript and Python, in one command (`npm run test:all`).
# Needs the Docker engine, PostgreSQL's binaries and the local base image (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "typecheck";        npm run --silent build
step "lint (TypeScript)"; npm run --silent lint
step "secret scan";      npm run --silent secretlint
step "backend: ruff, mypy"
(cd backend && uv run --frozen ruff check . && uv run --frozen ruff format --check . && uv run --frozen mypy)
step "backend: pytest"
(cd backend && uv run --frozen pytest -q --junitxml="$results/pytest.xml")
step "vitest (unit and Docker integration)"
npx vitest run --reporter=default --reporter=json --outputFile.json="$results/vitest.json"

# One closing line with the totals of both runners.
node -e '
const fs = require("fs");
const v = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const x = fs.readFileSync(process.argv[2], "utf8");
const attr = (n) => Number((x.match(new RegExp(`<testsuite[^>]* ${n}="(\\d+)"`)) || [0, 0])[1]);
const pyFailed = attr("failures") + attr("errors");
const pyPassed = attr("tests") - pyFailed - attr("skipped");
const passed = v.numPassedTests + pyPassed;
const failed = v.numFailedTests + pyFailed;
console.log(`\ntotal: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
' "$results/vitest.json" "$results/pytest.xml"
