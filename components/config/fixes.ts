/**
 * How a config problem is told: where it is, what is wrong, and the `pulumi config` command that
 * fixes it, with the example the schema keeps beside each key (schema.ts). Pure: no Pulumi runtime.
 */
import { z } from "zod";
import { REQUIRED_SECRETS } from "../contract";
import { formatRefusal, type Problem } from "../problems";
import type { KeyMeta } from "./schema";

/** One problem with the stack config. */
export interface ConfigProblem extends Problem {
  path: PropertyKey[];
}

type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  valueType?: z.ZodType;
  element?: z.ZodType;
};
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/**
 * The schema one wrapper further in, or undefined for a bare one: the inner type of a default,
 * prefault or optional; the validating side of a pipe (`z.preprocess(f, s)` is f -> s,
 * `s.transform(f)` is s -> f).
 */
function inner(schema: z.ZodType): z.ZodType | undefined {
  const def = defOf(schema);
  if (def.innerType !== undefined) return def.innerType;
  if (def.type === "pipe" && def.in !== undefined && def.out !== undefined) {
    return defOf(def.in).type === "transform" ? def.out : def.in;
  }
  return undefined;
}

/** Every schema a value passes through at one level: the outer wrappers first, the bare one last. */
function layers(schema: z.ZodType): z.ZodType[] {
  const out: z.ZodType[] = [];
  for (let s: z.ZodType | undefined = schema; s !== undefined; s = inner(s)) out.push(s);
  return out;
}

/** The child schema at `segment`: an object's key (or its catchall), a record's value. */
function child(schema: z.ZodType, segment: PropertyKey): z.ZodType | undefined {
  for (const layer of layers(schema)) {
    const def = defOf(layer);
    if (def.type === "object") return def.shape?.[String(segment)] ?? def.catchall;
    if (def.type === "record") return def.valueType;
    if (def.type === "array") return def.element;
  }
  return undefined;
}

/** What the schema says about the key at `path` (merged over its wrappers), or {} for an unknown one. */
export function keyMeta(schema: z.ZodType, path: readonly PropertyKey[]): KeyMeta {
  let node: z.ZodType | undefined = schema;
  for (const segment of path) {
    if (node === undefined) return {};
    node = child(node, segment);
  }
  if (node === undefined) return {};
  return Object.assign({}, ...layers(node).map((l) => (z.globalRegistry.get(l) ?? {}) as KeyMeta)) as KeyMeta;
}

/** The paths of every leaf of the schema (`*` for a record's or catchall's entries). */
export function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  for (const layer of layers(schema)) {
    const def = defOf(layer);
    if (def.type === "object") {
      const keys = Object.entries(def.shape ?? {}).flatMap(([k, s]) => leafPaths(s, [...prefix, k]));
      return def.catchall !== undefined && defOf(def.catchall).type !== "never" ? [...keys, ...leafPaths(def.catchall, [...prefix, "*"])] : keys;
    }
    if (def.type === "record" && def.valueType !== undefined) return leafPaths(def.valueType, [...prefix, "*"]);
    if (def.type === "array" && def.element !== undefined) return leafPaths(def.element, [...prefix, "*"]);
    if (def.type === "unknown") return [];
  }
  return [prefix];
}

/** A key path the way `pulumi config --path` spells it: `a.b`, with list indexes as `[0]`. */
const quotePath = (segments: readonly PropertyKey[]): string =>
  segments.map((s, i) => (typeof s === "number" || /^\d+$/.test(String(s)) ? `[${String(s)}]` : `${i === 0 ? "" : "."}${String(s)}`)).join("");
const PROMPT = "   (prompts for the value; or pipe it on stdin)";

/** The `pulumi config` command that sets (or removes) the value at `path`. */
export function fixCommand(schema: z.ZodType, stack: string, path: readonly PropertyKey[], action: "set" | "rm" = "set"): string {
  const key = quotePath(path);
  const pathFlag = path.length > 1 ? " --path" : "";
  const base = `pulumi config ${action} --stack ${stack}${pathFlag} '${key}'`;
  if (action === "rm") return base;
  // A whole required object is missing: name the leaves that must be set.
  if (path.length === 1 && path[0] === "secrets") {
    return REQUIRED_SECRETS.map((name) => fixCommand(schema, stack, ["secrets", name])).join("\n         ");
  }
  const meta = keyMeta(schema, path);
  // A problem of a whole object is fixed at the key inside it that its schema names.
  if (meta.fixAt !== undefined) return fixCommand(schema, stack, [...path, ...meta.fixAt]);
  if (meta.secret === true) return `pulumi config set --stack ${stack} --secret${pathFlag} '${key}'${PROMPT}`;
  // Every leaf has an example (a test walks them); an unknown path still gets a usable command.
  return `${base} ${meta.example ?? "<value>"}`;
}

/** The problems one zod issue stands for, each with its fix. */
export function issueProblems(schema: z.ZodType, stack: string, issue: z.core.$ZodIssue): ConfigProblem[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path: [...issue.path, key],
      message: `unknown key "${key}"${issue.path.length === 0 ? "" : ` in ${quotePath(issue.path)}`} (a typo?); known keys are listed in the README`,
      fix: fixCommand(schema, stack, [...issue.path, key], "rm"),
    }));
  }
  const kind = issue.code === "custom" ? (issue.params as { fix?: string } | undefined)?.fix : undefined;
  if (kind === "rm") return [{ path: issue.path, message: issue.message, fix: fixCommand(schema, stack, issue.path, "rm") }];
  if (kind === "move-to-secrets") {
    const name = issue.path[issue.path.length - 1] ?? "";
    const fix = `${fixCommand(schema, stack, issue.path, "rm")}\n         then ${fixCommand(schema, stack, ["secrets", name])}`;
    return [{ path: issue.path, message: issue.message, fix }];
  }
  return [{ path: issue.path, message: issue.message, fix: fixCommand(schema, stack, issue.path) }];
}

/** The error for a refused stack config: how many problems, that nothing changed, and each with its fix. */
export function formatProblems(stack: string, problems: readonly ConfigProblem[]): string {
  return formatRefusal(`Stack "${stack}" config is invalid`, "problem", "nothing was changed", problems);
}
