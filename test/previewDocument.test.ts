/**
 * The one reader of `pulumi preview --json`: what each step op means, how a resource's steps fold
 * into one, and the diagnostics by severity, as the comment and `npm run rotate` both see them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  diagnosticMessages,
  parsePreviewDocument,
  readPreviewDocument,
  resourceSteps,
  stepKind,
} from "../scripts/lib/preview/document";
import { summarizePreview } from "../scripts/lib/preview/rotationReport";
import { summarize } from "../scripts/lib/preview/stackSummary";

const URN = "urn:pulumi:staging::backend-delivery::backend-delivery:index:BackendService$docker:index/container:Container::web";

/** A replacement as Pulumi shows it with --show-replacement-steps: three steps for one resource. */
const REPLACEMENT = {
  steps: [
    { op: "replace", urn: URN, diffReasons: ["envs"], replaceReasons: ["envs"], detailedDiff: { "envs[2]": { kind: "update-replace" } } },
    { op: "create-replacement", urn: URN, replaceReasons: ["image"] },
    { op: "delete-replaced", urn: URN },
  ],
  changeSummary: { replace: 1 },
};

describe("stepKind", () => {
  it("maps every Pulumi step op to create, update, replace, delete or same", () => {
    const ops = ["same", "read", "refresh", "create", "import", "update", "replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement", "delete", "discard"];
    expect(Object.fromEntries(ops.map((op) => [op, stepKind(op)]))).toEqual({
      same: "same",
      read: "same",
      refresh: "same",
      create: "create",
      import: "create",
      update: "update",
      replace: "replace",
      "create-replacement": "replace",
      "delete-replaced": "replace",
      "discard-replaced": "replace",
      "import-replacement": "replace",
      delete: "delete",
      discard: "delete",
    });
  });

  it("shows an op it does not know as an update, even one named like an object property", () => {
    expect([stepKind("remove-pending-replace"), stepKind("constructor"), stepKind("toString")]).toEqual(["update", "update", "update"]);
  });
});

describe("resourceSteps", () => {
  it("folds a resource's steps into one: the strongest kind, every reason, the state's type", () => {
    expect(resourceSteps(readPreviewDocument(REPLACEMENT))).toEqual([
      {
        kind: "replace",
        urn: URN,
        type: "docker:index/container:Container",
        name: "web",
        diffReasons: ["envs"],
        replaceReasons: ["envs", "image"],
        detailedDiff: ["envs[2]"],
      },
    ]);
  });

  it("gives the comment and the rotation the same resource, once", () => {
    const comment = summarize({ stack: "staging", json: JSON.stringify(REPLACEMENT), exitCode: 0 });
    expect(comment.destructive).toEqual([{ op: "replace", type: "docker:index/container:Container", name: "web", keys: ["envs", "image"] }]);
    expect(comment.others).toEqual([]);
    const rotation = summarizePreview(REPLACEMENT);
    expect(rotation.changes).toEqual([{ kind: "replace", type: "docker:index/container:Container", name: "web", urn: URN, keys: ["envs", "envs[2]", "image"] }]);
  });
});

describe("diagnosticMessages", () => {
  const doc = readPreviewDocument({
    diagnostics: [
      { severity: "error", message: "error: boom\n" },
      { severity: "error" },
      { severity: "warning", message: "warning: careful\n" },
      { severity: "info", message: "Building image ./backend\n" },
    ],
  });

  it("reads one severity without Pulumi's lead; an error without a message still counts", () => {
    expect(diagnosticMessages(doc, "error")).toEqual(["boom", ""]);
    expect(diagnosticMessages(doc, "warning")).toEqual(["careful"]);
    expect(diagnosticMessages(doc)).toEqual(["boom", "", "careful", "Building image ./backend"]);
    expect(diagnosticMessages(undefined, "error")).toEqual([]);
  });

  it("reads the error of a captured failed preview", () => {
    const failed = parsePreviewDocument(fs.readFileSync(path.join(__dirname, "fixtures/preview/staging-failed.json"), "utf8"));
    expect(diagnosticMessages(failed, "error")[0]).toMatch(/^Stack "staging" config is invalid \(1 problem\)/);
  });
});

describe("readPreviewDocument", () => {
  it("refuses what is not a JSON object, and a step without its op, saying where", () => {
    for (const raw of [null, "text", 3, []]) {
      expect(() => readPreviewDocument(raw)).toThrow("not a `pulumi preview --json` document: the preview output is not a JSON object");
    }
    expect(() => readPreviewDocument({ steps: [{ urn: URN }] })).toThrow(/^not a `pulumi preview --json` document:\n.*\n {2}→ at steps\[0\]\.op$/);
  });
});
