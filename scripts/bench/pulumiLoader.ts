/**
 * Runs a benchmark in a Node process that loads TypeScript the way Pulumi does: each module
 * transpiled to CommonJS with the TypeScript API (Pulumi's vendored ts-node, transpile-only). tsx's
 * loader gets in the way of Pulumi's closure serialization, which the readiness check's dynamic
 * provider needs, so measuring under tsx would leave that resource out.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";

const CHILD_FLAG = "BACKEND_DELIVERY_BENCH_CHILD";

const TS_REQUIRE_HOOK = `
const fs = require("node:fs");
const ts = require("typescript");
require.extensions[".ts"] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, "utf8"), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(outputText, filename);
};
require(process.env.BACKEND_DELIVERY_BENCH_ENTRY);
`;

/**
 * In the child process, runs `bench`; otherwise starts the child on `entryFile` (the calling
 * script's `__filename`) and exits with its status.
 */
export function runLikePulumi(entryFile: string, bench: () => Promise<void>): void {
  if (process.env[CHILD_FLAG] === "1") {
    bench().catch((error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    });
    return;
  }
  const child = spawnSync(process.execPath, ["-e", TS_REQUIRE_HOOK], {
    cwd: path.resolve(__dirname, "..", ".."),
    env: { ...process.env, [CHILD_FLAG]: "1", BACKEND_DELIVERY_BENCH_ENTRY: entryFile },
    stdio: "inherit",
  });
  process.exit(child.status ?? 1);
}
