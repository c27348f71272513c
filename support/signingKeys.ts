/**
 * Signing keys for tests: a P-256 public key made with Node's crypto where only its shape matters
 * (config, the gate's messages), and a real cosign key pair (`cosign generate-key-pair`, the password
 * on its environment) where cosign signs and verifies for real.
 */
import { execFile } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh P-256 public key, PEM, as cosign.pub holds one. */
export function testPublicKey(): string {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString();
}

/** A cosign key pair: the encrypted private key, its password and the public key (all PEM or text). */
export interface CosignKeys {
  privateKey: string;
  password: string;
  publicKey: string;
}

/** Makes a real cosign key pair in a private folder that is removed afterwards. Needs cosign on PATH. */
export async function makeCosignKeys(): Promise<CosignKeys> {
  const dir = mkdtempSync(join(tmpdir(), "cosign-keys-"));
  const password = randomBytes(18).toString("base64url");
  try {
    await new Promise<void>((resolve, reject) =>
      execFile("cosign", ["generate-key-pair"], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir, COSIGN_PASSWORD: password } }, (error, _out, stderr) =>
        error ? reject(new Error(`cosign generate-key-pair failed (is cosign installed? bash scripts/install-supply-chain-tools.sh): ${stderr || error.message}`)) : resolve(),
      ),
    );
    return { privateKey: readFileSync(join(dir, "cosign.key"), "utf8"), password, publicKey: readFileSync(join(dir, "cosign.pub"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
