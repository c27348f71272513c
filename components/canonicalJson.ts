/**
 * JSON with the keys of every object sorted, at every depth: equal values, equal text, whatever order
 * config was written in. Plain, so that the dynamic providers that compare their inputs with it can
 * carry it into their own process.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}
