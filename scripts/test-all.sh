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
step "workflows: actionlint, zizmor"; bash scripts/lint-workflows.sh
step "secret scan";      npm run --silent secretlint
step "backend: ruff, mypy"
(cd backend && uv run --frozen ruff check . && uv run --frozen ruff format --check . && uv run --frozen mypy)
step "Swarm node script: ruff, mypy (the backend's rules)"
(cd backend && uv run --frozen ruff check --config pyproject.toml ../components/swarm/node_images.py && uv run --frozen ruff format --config pyproject.toml --check ../components/swarm/node_images.py && uv run --frozen mypy --strict ../components/swarm/node_images.py)
step "backend: pytest"
(cd backend && uv run --frozen pytest -q --junitxml="$results/pytest.xml")
step "backend: API fuzzer (schemathesis against the real server and PostgreSQL)"
(cd backend && uv run --frozen python -m tests.support.fuzz)
step "vitest: unit tests and Docker integration"
npx vitest run --exclude 'test/**/*.e2e.test.ts' --reporter=default --reporter=json --outputFile.json="$results/vitest.json"
# The real Pulumi engine on its own, one file at a time: its updates would slow the timing-sensitive
# Docker tests above, and the releases under load of one file those of another.
step "vitest: end to end with the real Pulumi engine"
npx vitest run .e2e.test.ts --no-file-parallelism --reporter=default --reporter=json --outputFile.json="$results/vitest-e2e.json"

# One closing line with the totals of both runners.
node -e '
const fs = require("fs");
const runs = [process.argv[1], process.argv[3]].map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const v = { numPassedTests: runs.reduce((n, r) => n + r.numPassedTests, 0), numFailedTests: runs.reduce((n, r) => n + r.numFailedTests, 0) };
const x = fs.readFileSync(process.argv[2], "utf8");
const attr = (n) => Number((x.match(new RegExp(`<testsuite[^>]* ${n}="(\\d+)"`)) || [0, 0])[1]);
const pyFailed = attr("failures") + attr("errors");
const pyPassed = attr("tests") - pyFailed - attr("skipped");
const passed = v.numPassedTests + pyPassed;
const failed = v.numFailedTests + pyFailed;
console.log(`\ntotal: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
' "$results/vitest.json" "$results/pytest.xml" "$results/vitest-e2e.json"
