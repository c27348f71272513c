/**
 * Program evaluation time under Pulumi's mocks for the staging stack: from calling the program to
 * every stack output resolved (all resources registered). Median of 5 runs after one warm-up run,
 * which pays for module loading. Writes bench-results/program.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import main from "../../index";
import { settle, setUpStack, stagingSetup } from "../../support/mocks";
import { runLikePulumi } from "./pulumiLoader";
import { writeResults } from "./results";

const RUNS = 5;
const GOAL_MS = 1000;

async function once(): Promise<{ ms: number; resources: number }> {
  const { mocks } = await setUpStack(stagingSetup());
  const started = process.hrtime.bigint();
  await settle(await main());
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, resources: mocks.resources.length };
}

async function bench(): Promise<void> {
  process.env.GIT_SHA ??= "0".repeat(40);
  const coldStart = process.hrtime.bigint();
  const warm = await once();
  const coldMs = Number(process.hrtime.bigint() - coldStart) / 1e6;
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) runs.push((await once()).ms);
  const sorted = [...runs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const result = {
    benchmark: "program evaluation under mocks (staging)",
    runs: runs.map((ms) => Math.round(ms * 10) / 10),
    medianMs: Math.round(median * 10) / 10,
    firstRunMs: Math.round(coldMs * 10) / 10,
    resources: warm.resources,
    goalMs: GOAL_MS,
    met: median <= GOAL_MS,
    node: process.version,
  };
  writeResults("program", result);
  if (process.env.BACKEND_DELIVERY_STACK_FILE) fs.rmSync(path.dirname(process.env.BACKEND_DELIVERY_STACK_FILE), { recursive: true, force: true });
}

runLikePulumi(__filename, bench);
