/**
 * The config rules of image signing: staging signs with its key wherever it pushes to a registry,
 * prod verifies with the public key wherever it pulls from one (fail closed: no key, no promotion),
 * and neither holds what belongs to the other. Without a registry there is nowhere to keep a
 * signature, so keys there are refused rather than silently unused. Pure: no Pulumi runtime.
 */
import { publicKeyProblem } from "../supplyChain/keys";
import type { ConfigProblem } from "./fixes";
import type { StackConfig } from "./schema";

/** The command that makes a key pair and stores both halves where they belong. */
export const SIGNING_INIT = "npm run signing -- init   (a key pair: the private key and its password into staging's secrets, the public key into prod's config)";

type Fix = (path: readonly PropertyKey[], action?: "set" | "rm") => string;

/** Problems of the signing keys in `config`, each with its fix. */
export function signingChecks(config: StackConfig, stack: string, fix: Fix): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const problem = (path: PropertyKey[], message: string, command: string) => problems.push({ path, message, fix: command });
  const registry = config.image.registry !== undefined;
  const keys = (["cosignPrivateKey", "cosignPassword"] as const).filter((key) => config[key] !== undefined);
  const publicKey = config.promotion.signing?.publicKey;

  if (config.environment === "prod") {
    for (const key of keys) {
      problem([key], "belongs to staging, which signs; prod only verifies, with promotion.signing.publicKey", fix([key], "rm"));
    }
    if (registry && publicKey === undefined) {
      problem(
        ["promotion", "signing", "publicKey"],
        "is required when image.registry is set: prod runs only images signed by staging's key, and refuses every promotion without it",
        `${SIGNING_INIT}\n         or, with staging's public key at hand: pulumi config set --stack ${stack} --path promotion.signing.publicKey < cosign.pub`,
      );
    }
    if (!registry && publicKey !== undefined) {
      problem(["promotion", "signing"], "is set but image.registry is not: signatures are kept in a registry, so there is nothing to verify", fix(["promotion", "signing"], "rm"));
    }
    const bad = publicKey === undefined ? undefined : publicKeyProblem(publicKey);
    if (bad !== undefined) problem(["promotion", "signing", "publicKey"], bad, `pulumi config set --stack ${stack} --path promotion.signing.publicKey < cosign.pub`);
    return problems;
  }
  if (registry && keys.length < 2) {
    for (const key of ["cosignPrivateKey", "cosignPassword"] as const) {
      if (config[key] === undefined) {
        problem([key], "is required when image.registry is set: staging signs every image it pushes, and prod refuses unsigned ones", SIGNING_INIT);
      }
    }
  }
  if (!registry) {
    for (const key of keys) {
      problem([key], "is set but image.registry is not: an image that stays on one Docker host is not signed", fix([key], "rm"));
    }
  }
  return problems;
}
