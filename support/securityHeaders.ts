/**
 * The security headers every response must carry, written out here on their own (not read from the
 * list the backend and the proxy use), so a test that compares against them can fail. HSTS is
 * apart: staging and production send it, development does not.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "x-permitted-cross-domain-policies": "none",
  "cache-control": "no-store, max-age=0",
};
export const HSTS = "max-age=63072000; includeSubDomains";
