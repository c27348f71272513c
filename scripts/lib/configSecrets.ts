/**
 * The reader of `pulumi config --show-secrets --json`: which values of a stack's config are secret,
 * so that whatever prints them can redact them.
 */
import { z } from "zod";

const ConfigJson = z.record(
  z.string(),
  z.looseObject({ value: z.string().optional(), objectValue: z.unknown().optional(), secret: z.boolean().optional() }),
);

function leaves(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (typeof v === "number" || typeof v === "boolean") return [String(v)];
  if (Array.isArray(v)) return v.flatMap(leaves);
  if (v !== null && typeof v === "object") return Object.values(v).flatMap(leaves);
  return [];
}

/**
 * The secret values in the output of `pulumi config --show-secrets --json`: each secret key's
 * value and, for an object holding secrets, every leaf of it.
 */
export function secretsFromConfigJson(json: string, source: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new Error(`${source} is not JSON; write it with \`pulumi config --show-secrets --json --stack <stack>\``);
  }
  const parsed = ConfigJson.safeParse(raw);
  if (!parsed.success) {
    throw new Error(`${source} is not the output of \`pulumi config --show-secrets --json\`:\n${z.prettifyError(parsed.error)}`);
  }
  const values: string[] = [];
  const hidden: string[] = [];
  for (const [key, entry] of Object.entries(parsed.data)) {
    if (entry.secret !== true) continue;
    if (entry.value === undefined) hidden.push(key);
    else values.push(entry.value, ...leaves(entry.objectValue));
  }
  if (hidden.length > 0) {
    throw new Error(
      `${source} holds secret keys without their values (${hidden.join(", ")}); ` +
        "it must be written with --show-secrets, or those values could not be redacted",
    );
  }
  return values;
}
