/**
 * Loads this stack's config at the program's entry: validates it (parse.ts) before any resource is
 * registered, and hands the program secrets only as secret Outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import type { DeliveryConfig } from "../delivery/config";
import { secretTags } from "../envMapping";
import { ROLLBACK_ENV } from "../release/history";
import { formatProblems } from "./fixes";
import { parseStackConfig, type ParsedStackConfig } from "./parse";
import { readStackFile, stackFilePath } from "./secretStorage";

/** GitHub delivery as the program uses it: its settings, and its secrets as secret Outputs. */
export interface DeliverySettings {
  config: DeliveryConfig;
  /** Environment secret name -> its value (from the stack secret `environmentSecrets` names). */
  environmentSecrets: Record<string, pulumi.Output<string>>;
  /** A GitHub token with admin rights on the repository (`github:token`). */
  token: pulumi.Output<string>;
}

/** The stack config as the program uses it: secrets only as secret Outputs. */
export interface BackendConfig
  extends Omit<ParsedStackConfig, "secrets" | "registryPassword" | "tlsPrivateKey" | "cosignPrivateKey" | "cosignPassword" | "deliverySecrets" | "githubToken" | "delivery"> {
  project: string;
  stack: string;
  secrets: Record<string, pulumi.Output<string>>;
  registryPassword?: pulumi.Output<string>;
  /** `certificate` mode's private key. */
  tlsPrivateKey?: pulumi.Output<string>;
  /** Staging's signing key (`cosignPrivateKey`, `cosignPassword`), as secret Outputs. */
  signingKey?: { privateKey: pulumi.Output<string>; password: pulumi.Output<string> };
  delivery?: DeliverySettings;
  /** Set by `npm run rollback`: the image to roll back to (the stack's `previousImageRef`). */
  rollbackTo?: string;
  /** A tag per secret setting that changes with its value and tells nothing of it (envMapping.ts `secretTags`). */
  secretTags: Record<string, string>;
}

/**
 * Load and validate this stack's config. Throws one `RunError` listing every problem before anything
 * else happens, so no resource is registered on bad config and the engine prints no stack trace.
 */
export function loadConfig(): BackendConfig {
  const project = new pulumi.Config().name;
  const stack = pulumi.getStack();
  // The engine's secret-key list is internal to the SDK; read it where it is exposed at runtime.
  const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
  const result = parseStackConfig({
    project,
    stack,
    values: pulumi.runtime.allConfig(),
    secretSources: {
      stackFile: readStackFile(stackFilePath(stack), process.env.BACKEND_DELIVERY_STACK_FILE !== undefined),
      isSdkSecret: (key) => runtime.isConfigSecret?.(key) ?? false,
    },
  });
  if (!result.ok) throw new pulumi.RunError(formatProblems(stack, result.problems));
  // Not stack config: a one-off request for this update only, so the next one is a normal update again.
  const requested = process.env[ROLLBACK_ENV]?.trim();
  const rollbackTo = requested === undefined || requested === "" ? undefined : requested;
  // Plain values of secrets go no further than here: the program only sees secret Outputs.
  const { secrets, registryPassword, tlsPrivateKey, cosignPrivateKey, cosignPassword, deliverySecrets, githubToken, delivery, ...rest } = result.config;
  return {
    ...rest,
    project,
    stack,
    secrets: Object.fromEntries(Object.entries(secrets).map(([name, value]) => [name, pulumi.secret(value)])),
    secretTags: secretTags(secrets, secrets.SECRET_KEY),
    ...(registryPassword === undefined ? {} : { registryPassword: pulumi.secret(registryPassword) }),
    ...(tlsPrivateKey === undefined ? {} : { tlsPrivateKey: pulumi.secret(tlsPrivateKey) }),
    ...(cosignPrivateKey === undefined || cosignPassword === undefined
      ? {}
      : { signingKey: { privateKey: pulumi.secret(cosignPrivateKey), password: pulumi.secret(cosignPassword) } }),
    ...(delivery === undefined || githubToken === undefined
      ? {}
      : {
          delivery: {
            config: delivery,
            environmentSecrets: Object.fromEntries(
              Object.entries(delivery.environmentSecrets).map(([name, key]) => [name, pulumi.secret(deliverySecrets[key] ?? "")]),
            ),
            token: pulumi.secret(githubToken),
          },
        }),
    ...(rollbackTo === undefined ? {} : { rollbackTo }),
  };
}
