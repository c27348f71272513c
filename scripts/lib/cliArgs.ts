/**
 * Command lines of `npm run up` and `npm run rotate`, parsed without side effects. A bad command
 * line yields a message that shows the right usage.
 */
import { validateEnvVarName } from "./stackSecrets";

export const UP_USAGE = "Usage: npm run up -- <stack> [-- <extra pulumi up arguments>]   e.g. npm run up -- staging";
export const ROTATE_USAGE =
  "Usage: npm run rotate -- --stack <stack> <ENV_VAR> [--generate]   (the new value is read from stdin)\n" +
  "  e.g. npm run rotate -- --stack staging SECRET_KEY --generate\n" +
  "       npm run rotate -- --stack staging DATABASE_URL < database-url.txt";

/** Stack names pulumi accepts, optionally qualified as `org/stack` or `org/project/stack`. */
const STACK_NAME = /^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** `npm run up -- <stack> [--] [pulumi up args...]`. */
export interface UpArgs {
  stack: string;
  /** Passed verbatim to `pulumi up`. */
  extra: string[];
}

export function parseUpArgs(argv: readonly string[]): Parsed<UpArgs> {
  const args = [...argv];
  if (args[0] === "--") args.shift();
  const stack = args.shift();
  if (stack === undefined || stack === "" || stack === "-h" || stack === "--help") {
    return { ok: false, error: `A stack name is required.\n${UP_USAGE}` };
  }
  if (stack.startsWith("-")) {
    return { ok: false, error: `The first argument must be the stack name, not the option "${stack}".\n${UP_USAGE}` };
  }
  if (!STACK_NAME.test(stack)) {
    return { ok: false, error: `"${stack}" is not a valid stack name (letters, digits, -, _, .; optionally org/ first).\n${UP_USAGE}` };
  }
  if (args[0] === "--") args.shift();
  return { ok: true, value: { stack, extra: args } };
}

/** `npm run rotate -- --stack <stack> <ENV_VAR> [--generate]`. */
export interface RotateArgs {
  stack: string;
  name: string;
  generate: boolean;
}

export function parseRotateArgs(argv: readonly string[]): Parsed<RotateArgs> {
  let stack: string | undefined;
  let generate = false;
  const names: string[] = [];
  const args = argv[0] === "--" ? argv.slice(1) : [...argv];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--stack" || a === "-s") {
      const v = args[i + 1];
      if (v === undefined || v.startsWith("-")) return { ok: false, error: `${a} needs a stack name.\n${ROTATE_USAGE}` };
      stack = v;
      i++;
    } else if (a.startsWith("--stack=")) {
      stack = a.slice("--stack=".length);
    } else if (a === "--generate") {
      generate = true;
    } else if (a === "-h" || a === "--help") {
      return { ok: false, error: ROTATE_USAGE };
    } else if (a.startsWith("-")) {
      // A value passed as an option would end up in argv and shell history: refuse it outright.
      return {
        ok: false,
        error: `Unknown option "${a.split("=")[0]}". The new value is read from stdin, never from the command line.\n${ROTATE_USAGE}`,
      };
    } else {
      names.push(a);
    }
  }
  if (stack === undefined || stack === "") return { ok: false, error: `--stack <stack> is required.\n${ROTATE_USAGE}` };
  if (!STACK_NAME.test(stack)) return { ok: false, error: `"${stack}" is not a valid stack name.\n${ROTATE_USAGE}` };
  if (names.length !== 1) {
    return {
      ok: false,
      error:
        names.length === 0
          ? `Name the environment variable to rotate (e.g. SECRET_KEY).\n${ROTATE_USAGE}`
          : // Never echo the extra words: the second one is most likely the value itself.
            `Expected exactly one environment variable name, got ${names.length} words. The value goes on stdin, not the command line.\n${ROTATE_USAGE}`,
    };
  }
  const name = names[0] as string;
  const bad = validateEnvVarName(name);
  if (bad) return { ok: false, error: `${bad}\n${ROTATE_USAGE}` };
  if (generate && name === "DATABASE_URL") {
    return { ok: false, error: "DATABASE_URL is a connection URL, not a random token: pipe the new URL on stdin instead of --generate." };
  }
  return { ok: true, value: { stack, name, generate } };
}
