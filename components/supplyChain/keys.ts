/**
 * The signing key's public half as the program handles it: checked to be a PEM public key, and named
 * by a fingerprint (`sha256:` of its DER encoding) wherever a message or a record must say which key
 * without printing it. Pure; the dynamic provider carries it, so `require` inside.
 */

/** Why `pem` is not a public key cosign can verify with, or undefined when it is one. */
export function publicKeyProblem(pem: string): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createPublicKey } = require("node:crypto") as typeof import("node:crypto");
  if (!/^-----BEGIN PUBLIC KEY-----\r?\n[\s\S]+\r?\n-----END PUBLIC KEY-----\s*$/.test(pem.trim())) {
    return /PRIVATE KEY/.test(pem)
      ? "holds a private key; prod needs the public key only (cosign.pub), and a private key belongs in staging's secrets"
      : "is not a PEM public key (-----BEGIN PUBLIC KEY----- ... as in cosign.pub)";
  }
  try {
    createPublicKey(pem);
    return undefined;
  } catch (error) {
    return `is not a readable public key (${(error as Error).message})`;
  }
}

/** `sha256:<64 hex>` of the key's DER (SubjectPublicKeyInfo) encoding: the same for any PEM spelling of it. */
export function publicKeyFingerprint(pem: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHash, createPublicKey } = require("node:crypto") as typeof import("node:crypto");
  const der = createPublicKey(pem).export({ type: "spki", format: "der" });
  return `sha256:${createHash("sha256").update(der).digest("hex")}`;
}

/** The fingerprint cut to what a message shows (`sha256:1a2b3c4d5e6f`). */
export function shortFingerprint(fingerprint: string): string {
  return fingerprint.slice(0, "sha256:".length + 12);
}
