/**
 * The command-line helpers' one error model: the exit codes they document, the error they throw
 * when they refuse or fail on purpose, and the `main` runner that turns both into the process's
 * exit code and a message on stderr, redacted.
 */
import { redact } from "../../components/redact";

/**
 * Exit codes of `npm run up`, `rotate`, `rollback`, `drift`, `status` and `scripts/pr-comment.ts`, by meaning. Each
 * helper's header lists the ones it uses; a code means the same wherever it is used.
 */
export const ExitCode = {
  ok: 0,
  /** A `pulumi` command failed; its own message was shown. */
  pulumiFailed: 1,
  /** GitHub refused the pull-request comment; its message was shown. */
  githubRefused: 1,
  /** The command line or the value or input given was wrong. */
  usage: 2,
  /** Refused on purpose: prod without secrets, no backend, missing stack or passphrase. */
  refused: 3,
  /** Rotation stored the new value, but the preview of its effect failed. */
  previewFailed: 4,
  /** `npm run drift`: the stack differs from what the program declares. */
  drift: 1,
  /** `npm run drift`: the check could not decide (preview failed, no such stack, GitHub refused the report). */
  notChecked: 2,
} as const;

/** An error the helpers expect and explain; `main` prints its message and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/**
 * Runs a helper's `main`, turning its result into the process exit code. Expected failures
 * ({@link CliError}) print their message only; anything else prints its stack, which is a bug. Every
 * message passes through {@link redact} with the values `secrets()` lists at that moment.
 */
export function runMain(main: () => Promise<number>, secrets: () => readonly string[] = () => []): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const text = e instanceof CliError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
      process.stderr.write(`${redact(text, secrets())}\n`);
      process.exitCode = e instanceof CliError ? e.exitCode : ExitCode.pulumiFailed;
    },
  );
}
