/**
 * One line of JSON in the program's log that a reader takes back from `pulumi preview --json`
 * (the gate's verdict, a stack's TLS status): a fixed prefix, then the value, checked against its
 * schema on the way out and on the way in. Nobody parses the program's prose.
 */
import { z } from "zod";

/** `<prefix><value as JSON>`, the value checked against `schema` first. */
export function formatLogLine<T>(prefix: string, schema: z.ZodType<T>, value: T): string {
  return `${prefix}${JSON.stringify(schema.parse(value))}`;
}

/**
 * The value of the first line in `messages` (diagnostics of any severity) that holds `prefix`, or
 * undefined when none does. A line with the prefix that does not hold a valid value is an error:
 * the writer and this reader disagree, which a round-trip test must catch.
 */
export function readLogLine<T>(messages: readonly string[], prefix: string, schema: z.ZodType<T>): T | undefined {
  const name = prefix.trim();
  for (const message of messages) {
    for (const line of message.split("\n")) {
      const at = line.indexOf(prefix);
      if (at === -1) continue;
      let raw: unknown;
      try {
        raw = JSON.parse(line.slice(at + prefix.length));
      } catch {
        throw new Error(`a "${name}" line is not JSON: ${line.slice(0, 120)}`);
      }
      const parsed = schema.safeParse(raw);
      if (!parsed.success) throw new Error(`a "${name}" line breaks the contract:\n${z.prettifyError(parsed.error)}`);
      return parsed.data;
    }
  }
  return undefined;
}
