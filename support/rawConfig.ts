/**
 * Stack config as the engine hands it to `parseStackConfig`, for the config tests: every value as a
 * string (objects as JSON), and a stack file whose encrypted leaves are `secure:` placeholders.
 */
import type { RawStackConfig } from "../components/config/parse";
import { PROJECT } from "./mocks";

/** Project config values by key (without the project prefix); objects as objects. */
export type Config = Record<string, unknown>;

/** How a stack file records an encrypted leaf (a placeholder: nothing decrypts it). */
export const SECURE = { secure: "v1:ZmFrZQ==:ZW5jcnlwdGVk" };

/** Options of {@link raw}. */
export interface RawOptions {
  stack?: string;
  /** Key paths the stack file stores encrypted; {@link defaultEncrypted} unless told. */
  encrypted?: string[];
  /** Full keys the SDK reports as secret. */
  sdkSecret?: string[];
  noStackFile?: boolean;
  /** The time certificates are checked against. */
  now?: Date;
}

/** Raw engine input: values as the engine passes them; `encrypted` leaves marked secure in the file. */
export function raw(config: Config, options: RawOptions = {}): RawStackConfig {
  const encrypted = options.encrypted ?? defaultEncrypted(config);
  const file: Config = structuredClone(config);
  for (const keyPath of encrypted) {
    const segments = keyPath.split(".");
    let node = file;
    for (const s of segments.slice(0, -1)) node = node[s] as Config;
    node[segments[segments.length - 1]!] = SECURE;
  }
  const sdk = new Set(options.sdkSecret ?? []);
  return {
    project: PROJECT,
    stack: options.stack ?? (config.environment === "prod" ? "prod" : "staging"),
    values: Object.fromEntries(
      Object.entries(config).map(([k, v]) => [`${PROJECT}:${k}`, typeof v === "string" ? v : JSON.stringify(v)]),
    ),
    secretSources: {
      stackFile: options.noStackFile
        ? undefined
        : { config: Object.fromEntries(Object.entries(file).map(([k, v]) => [`${PROJECT}:${k}`, v])) },
      isSdkSecret: (key) => sdk.has(key),
    },
    ...(options.now === undefined ? {} : { now: options.now }),
  };
}

/** Every leaf under `secrets`, and `registryPassword` and `tlsPrivateKey`: how a correctly set-up stack stores them. */
export function defaultEncrypted(config: Config): string[] {
  const secrets = config.secrets;
  const leaves =
    secrets && typeof secrets === "object" ? Object.keys(secrets).map((name) => `secrets.${name}`) : [];
  return [...leaves, ...["registryPassword", "tlsPrivateKey", "cosignPrivateKey", "cosignPassword"].filter((key) => config[key] !== undefined)];
}
