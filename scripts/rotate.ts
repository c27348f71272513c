/**
 * Secret rotation: `npm run rotate -- --stack <stack> <ENV_VAR> [--generate]`.
 *
 * Reads the new value from stdin (a hidden prompt on a terminal), or generates a strong one with
 * `--generate`; stores it with `pulumi config set --secret --path 'secrets.<ENV_VAR>'`, the value on
 * pulumi's stdin and never in argv; then previews the stack and prints which containers will be
 * replaced or updated and which of their properties change. No value is ever printed.
 *
 * Exit codes: 0 stored and previewed; 2 bad command line or value; 3 refused (no backend, no such
 * stack, no passphrase); 1 storing failed; 4 stored, but the preview failed.
 */
import { redact } from "../components/redact";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { parseRotateArgs } from "./lib/cliArgs";
import { parsePreviewDocument } from "./lib/preview/document";
import { type PreviewSummary, formatPreview, summarizePreview } from "./lib/preview/rotationReport";
import { policyPackArgs } from "./lib/policyPack";
import { projectDir, setSecret, stackExists } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";
import { generateSecret, normalizeSecretInput, secretPath } from "./lib/stackSecrets";

/** The new value, once known: every line about the rotation, and pulumi's output, is redacted with it. */
const hidden: string[] = [];

function say(line: string): void {
  process.stdout.write(`${redact(line, hidden)}\n`);
}

function readAllStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on("data", (c: Buffer) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

/** Prompts on the terminal without echoing what is typed. */
function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    // Echo goes off before the prompt appears, so nothing typed after seeing it can be echoed.
    stdin.setRawMode(true);
    let value = "";
    const finish = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener("data", onData);
      process.stderr.write("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return finish();
        if (ch === "\u0003") return finish(new CliError("Cancelled; nothing was stored.", ExitCode.usage));
        if (ch === "\u007f" || ch === "\b") value = [...value].slice(0, -1).join("");
        else value += ch;
      }
    };
    stdin.resume();
    stdin.on("data", onData);
    process.stderr.write(prompt);
  });
}

async function main(): Promise<number> {
  const parsed = parseRotateArgs(process.argv.slice(2));
  if (!parsed.ok) throw new CliError(parsed.error, ExitCode.usage);
  const { stack, name, generate } = parsed.value;
  const key = secretPath(name);

  // The value is settled before pulumi runs, so a bad one changes nothing.
  let value: string;
  if (generate) {
    value = generateSecret();
  } else {
    const raw = process.stdin.isTTY ? await readHidden(`New value for ${name} (input hidden): `) : await readAllStdin();
    const normalized = normalizeSecretInput(raw);
    if ("error" in normalized) throw new CliError(`${normalized.error} Nothing was stored.`, ExitCode.usage);
    value = normalized.value;
  }
  hidden.push(value);

  const dir = projectDir();
  const session = await openSession(dir, process.env, false);
  const { cli } = session;
  // Made from paths and variable names only, and printed as `npm run up` prints them: the shared
  // redaction would take `Passphrase: <file>` for a credential and hide the file the user needs.
  for (const line of describeSession(session, dir)) process.stdout.write(`${line}\n`);

  if (!(await stackExists(cli, stack))) {
    throw new CliError(
      `Stack ${stack} does not exist in this backend; nothing was stored. Create it first: npm run up -- ${stack}`,
      ExitCode.refused,
    );
  }

  await setSecret(cli, stack, key, value);
  say(`Stored ${key} for stack ${stack}, encrypted${generate ? " (generated: 32 random bytes)" : ""}. The value is not shown.`);

  say(`Previewing stack ${stack} ...`);
  const res = await cli.capture(["preview", "--stack", stack, "--json", "--non-interactive", ...policyPackArgs(dir, say)]);
  let summary: PreviewSummary | undefined;
  try {
    summary = summarizePreview(parsePreviewDocument(res.stdout));
  } catch {
    summary = undefined;
  }
  if (res.code !== 0 || summary === undefined || summary.errors.length > 0) {
    const details = summary && summary.errors.length > 0 ? summary.errors.join("\n") : res.stderr.trim() || res.stdout.trim();
    throw new CliError(
      redact(
        `${key} IS stored, but \`pulumi preview --stack ${stack}\` failed (exit ${res.code})` +
          `${details ? `:\n${details}` : "."}\nFix the problem, then run: pulumi preview --stack ${stack}`,
        hidden,
      ),
      ExitCode.previewFailed,
    );
  }

  say(`Config key changed: ${key}`);
  for (const line of formatPreview(summary, stack)) say(line);
  say(`Apply it with: pulumi up --stack ${stack}   (or: npm run up -- ${stack})`);
  return ExitCode.ok;
}

runMain(main, () => hidden);
