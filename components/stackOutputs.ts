/**
 * Reads another stack's outputs (or this stack's own, from its last update) through the engine's
 * built-in `pulumi:pulumi:readStackOutputs` invoke: the same read a `StackReference` makes, without
 * a resource in state. A `StackReference` records what it read, so every later `pulumi refresh`
 * reports it changed as soon as the stack it reads has been updated (its own stack included), and
 * the engine fails an unknown stack before the program can say what to do about it.
 */
import * as pulumi from "@pulumi/pulumi";
import type { OutputDetails } from "./promotion/readStaging";

/** The engine's built-in function that reads a stack's outputs. */
export const READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs";

/** A stack's outputs, each as `{ value }`, or `{ secretValue }` for one exported as secret. */
export type StackOutputDetails = Record<string, OutputDetails>;

/** What the invoke answers. */
interface ReadAnswer {
  outputs?: Record<string, unknown>;
  secretOutputNames?: string[];
}

/** Thrown when the backend holds no stack of that name (or cannot read it). */
export class StackReadError extends Error {}

/**
 * The outputs of `stack` (`<organization>/<project>/<stack>`). Secret outputs stay apart as
 * `secretValue`, so a caller can refuse them without ever echoing the value.
 */
export async function readStackOutputs(stack: string): Promise<StackOutputDetails> {
  let answer: ReadAnswer;
  try {
    answer = (await pulumi.runtime.invoke(READ_STACK_OUTPUTS, { name: stack }, { async: true })) as ReadAnswer;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // "invocation of pulumi:pulumi:readStackOutputs returned an error: unknown stack "..."": keep the engine's reason.
    throw new StackReadError(message.replace(/^.*returned an error: /s, "").split("\n")[0] ?? message);
  }
  const secret = new Set(answer.secretOutputNames ?? []);
  return Object.fromEntries(
    Object.entries(answer.outputs ?? {}).map(([name, value]) => [name, secret.has(name) ? { secretValue: value } : { value }]),
  );
}

/** `<organization>/<project>/<stack>` of the stack being updated. */
export function currentStackName(): string {
  let organization: string;
  try {
    organization = pulumi.getOrganization();
  } catch {
    // The file backend's organization is always the constant "organization".
    organization = "organization";
  }
  return `${organization}/${pulumi.getProject()}/${pulumi.getStack()}`;
}
