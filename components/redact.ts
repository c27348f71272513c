/**
 * Redaction: the one function every reader of untrusted or secret-bearing text calls before it
 * prints anything (container log lines in a readiness failure, `pulumi` output in the helpers, the
 * pull-request comment). It replaces the values it is given and anything shaped like a credential.
 *
 * The readiness check's dynamic provider carries this function into its own process, so it uses
 * only literals and Node globals: no module-level objects for Pulumi's closure serializer to copy.
 */

/** What every redacted value and credential becomes. */
export const REDACTED = "[secret]";

/**
 * `text` with every given value (and its JSON- and URL-escaped forms) and every credential shape
 * replaced by {@link REDACTED}: private keys, GitHub, AWS and Slack tokens, JWTs, bearer and basic
 * credentials, the password of `scheme://user:password@host`, and `password=`/`TOKEN: ` style
 * assignments. Pulumi's own `[secret]` placeholders are left as they are.
 */
export function redact(text: string, values: readonly string[] = []): string {
  const mask = "[secret]";
  const forms = new Set<string>();
  for (const value of values) {
    if (value === "") continue;
    forms.add(value);
    forms.add(JSON.stringify(value).slice(1, -1));
    forms.add(encodeURIComponent(value));
  }
  let out = text;
  if (forms.size > 0) {
    // One pass, longest first, so a value inside another is never half-replaced.
    const alternation = [...forms].sort((a, b) => b.length - a.length).map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    out = out.replace(new RegExp(alternation.join("|"), "g"), mask);
  }
  return out
    .replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, mask)
    .replace(/\bgh[pousr]_[A-Za-z0-9]{20,255}\b/g, mask)
    .replace(/\bgithub_pat_[A-Za-z0-9_]{20,255}\b/g, mask)
    .replace(/\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g, mask)
    .replace(/\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, mask)
    .replace(/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}/g, mask)
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${mask}`)
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi, `$1${mask}@`)
    .replace(
      // Not after a "/": `docker:index/secret:Secret` is a Pulumi type token, not an assignment.
      /\b(?<!\/)([A-Za-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|passphrase|credentials?|key)["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"',;&]+)/gi,
      (_match: string, head: string, value: string) => {
        const quote = value.startsWith('"') || value.startsWith("'") ? value[0] : "";
        return `${head}${quote}${mask}${quote}`;
      },
    );
}
