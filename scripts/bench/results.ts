/** What every benchmark script shares: rounding and where its figures go. */
import * as fs from "node:fs";
import * as path from "node:path";

const RESULTS_DIR = path.resolve(__dirname, "..", "..", "bench-results");

/** Milliseconds as seconds, to a tenth. */
export const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/**
 * Writes `result` to `bench-results/<name>.json` and prints it (or `shown`, a shorter view of it).
 */
export function writeResults(name: string, result: unknown, shown: unknown = result): void {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
  console.log(typeof shown === "string" ? shown : JSON.stringify(shown, null, 2));
}
