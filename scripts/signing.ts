/**
 * Image signing keys: `npm run signing -- init [--staging <stack>] [--prod <stack>] [--force]`.
 *
 * Makes a cosign key pair (`cosign generate-key-pair`, ECDSA P-256, the private key encrypted with a
 * generated password) in a private folder that is removed afterwards, stores the private key and its
 * password as staging's secrets `cosignPrivateKey` and `cosignPassword` (on pulumi's stdin, never in
 * argv) and the public key as prod's `promotion.signing.publicKey`, then says what it did and the
 * key's fingerprint; never a key or the password. A stack that already has a key keeps it unless
 * `--force` says to replace it (prod then refuses images signed with the old key until staging signs
 * again: `pulumi up --refresh --stack <staging>`).
 *
 * Exit codes: 0 stored; 2 bad command line; 3 refused (no backend or passphrase, a stack missing, a
 * key already set); 1 cosign or pulumi failed.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { publicKeyFingerprint } from "../components/supplyChain/keys";
import { installHint } from "../components/supplyChain/tools";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { configState, projectDir, setPlain, setSecret, stackExists } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";

/** Values made during this run: nothing printed may hold them. */
const made: string[] = [];

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const USAGE = "usage: npm run signing -- init [--staging <stack>] [--prod <stack>] [--force]";

function parse(argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { staging: { type: "string", default: "staging" }, prod: { type: "string", default: "prod" }, force: { type: "boolean", default: false } } });
  } catch (e) {
    throw new CliError(`${(e as Error).message}\n${USAGE}`, ExitCode.usage);
  }
  if (parsed.positionals.length !== 1 || parsed.positionals[0] !== "init") throw new CliError(USAGE, ExitCode.usage);
  return parsed.values;
}

/** A new key pair from cosign, made in a private folder that is gone when this returns. */
async function generateKeyPair(): Promise<{ privateKey: string; password: string; publicKey: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "backend-delivery-keys-"));
  fs.chmodSync(dir, 0o700);
  const password = randomBytes(32).toString("base64url");
  made.push(password);
  try {
    await new Promise<void>((resolve, reject) =>
      execFile("cosign", ["generate-key-pair"], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir, COSIGN_PASSWORD: password } }, (error, _out, stderr) => {
        if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") reject(new CliError(`cosign is not installed: ${installHint("cosign")}`, ExitCode.refused));
        else if (error) reject(new CliError(`cosign generate-key-pair failed: ${stderr.trim() || error.message}`, ExitCode.pulumiFailed));
        else resolve();
      }),
    );
    const privateKey = fs.readFileSync(path.join(dir, "cosign.key"), "utf8");
    made.push(privateKey);
    return { privateKey, password, publicKey: fs.readFileSync(path.join(dir, "cosign.pub"), "utf8").trim() };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const { staging, prod, force } = parse(process.argv.slice(2));
  const dir = projectDir();
  const session = await openSession(dir, process.env, false);
  const { cli } = session;
  for (const line of describeSession(session, dir)) say(line);

  for (const stack of [staging, prod]) {
    if (!(await stackExists(cli, stack))) throw new CliError(`Stack ${stack} does not exist in this backend; nothing was stored. Create it first: pulumi stack init ${stack}`, ExitCode.refused);
  }
  const present = [
    ...((await configState(cli, staging, "cosignPrivateKey", false)).set ? [`cosignPrivateKey of ${staging}`] : []),
    ...((await configState(cli, prod, "promotion.signing.publicKey", true)).set ? [`promotion.signing.publicKey of ${prod}`] : []),
  ];
  if (present.length > 0 && !force) {
    throw new CliError(
      `${present.join(" and ")} ${present.length === 1 ? "is" : "are"} already set; nothing was changed. To replace the key pair, run again with --force: ` +
        `prod then refuses images signed with the old key until staging signs again (pulumi up --refresh --stack ${staging}).`,
      ExitCode.refused,
    );
  }

  const keys = await generateKeyPair();
  await setSecret(cli, staging, "cosignPrivateKey", keys.privateKey);
  await setSecret(cli, staging, "cosignPassword", keys.password);
  await setPlain(cli, prod, "promotion.signing.publicKey", keys.publicKey);
  say(`Made a cosign key pair (ECDSA P-256), public key fingerprint ${publicKeyFingerprint(keys.publicKey)}.`);
  say(`Stored cosignPrivateKey and cosignPassword in stack ${staging}, encrypted (neither is shown), and promotion.signing.publicKey in stack ${prod}.`);
  say(`Next: commit Pulumi.${staging}.yaml and Pulumi.${prod}.yaml, then pulumi up --stack ${staging} (signs and attests its image) and pulumi up --stack ${prod} (verifies both).`);
  return ExitCode.ok;
}

runMain(main, () => made);
