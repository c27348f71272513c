/**
 * What a stack ran before this update, and the rules that follow from it: the rollback target
 * (`previousImageRef`), a requested rollback, and the record a rollback leaves. Read from the stack's
 * own outputs of its last update (stackOutputs.ts); the rules are pure and tested without mocks.
 */
import { ImageRef, RollbackRecord } from "../contract";
import { currentStackName, readStackOutputs } from "../stackOutputs";

/** The environment variable `npm run rollback` passes the image to roll back to in. */
export const ROLLBACK_ENV = "BACKEND_DELIVERY_ROLLBACK_TO";

/** What the stack's last update left that the next one needs. */
export interface ReleaseHistory {
  readonly imageRef?: string;
  readonly previousImageRef?: string;
  readonly rollback?: RollbackRecord;
}

/**
 * This stack's history from its own last outputs; empty on the first deploy. An output that is
 * secret or malformed is left out, with a warning through `warn`.
 */
export async function readReleaseHistory(warn: (message: string) => void): Promise<ReleaseHistory> {
  let outputs: Awaited<ReturnType<typeof readStackOutputs>>;
  try {
    outputs = await readStackOutputs(currentStackName());
  } catch (error) {
    warn(`could not read this stack's previous outputs, so it has no rollback target: ${(error as Error).message}`);
    return {};
  }
  const plain = (name: string): unknown => {
    const details = outputs[name];
    if (details?.secretValue !== undefined) {
      warn(`this stack's previous \`${name}\` output is a secret; it is left out of the release history`);
      return undefined;
    }
    return details?.value;
  };
  const imageRef = ImageRef.safeParse(plain("imageRef"));
  const previousImageRef = ImageRef.safeParse(plain("previousImageRef"));
  const rollback = RollbackRecord.safeParse(plain("rollback"));
  return {
    ...(imageRef.success ? { imageRef: imageRef.data } : {}),
    ...(previousImageRef.success ? { previousImageRef: previousImageRef.data } : {}),
    ...(rollback.success ? { rollback: rollback.data } : {}),
  };
}

/**
 * The rollback target after an update that runs `next`: the last *different* image the stack ran.
 * An update that keeps the image (a rerun, a secret rotation) keeps the target it had.
 */
export function nextPreviousImageRef(previous: ReleaseHistory, next: string): string | undefined {
  if (previous.imageRef === undefined || previous.imageRef === next) return previous.previousImageRef;
  return previous.imageRef;
}

/** The rollback record after an update that runs `next`: kept while the stack runs the image it rolled back to. */
export function keptRollback(previous: ReleaseHistory, next: string): RollbackRecord | undefined {
  return previous.rollback !== undefined && previous.imageRef === next ? previous.rollback : undefined;
}

/** A requested rollback, checked against the history: what to run and what to record, or why not. */
export type RollbackPlan = { ok: true; target: string; record: RollbackRecord } | { ok: false; problem: string };

/**
 * Checks a rollback to `requested` against the stack's history at `now`. The request must name the
 * stack's current rollback target exactly: one read a moment ago by `npm run rollback` and since
 * replaced by another update must not roll the stack somewhere else.
 */
export function planRollback(previous: ReleaseHistory, requested: string, now: Date): RollbackPlan {
  if (previous.imageRef === undefined || previous.previousImageRef === undefined) {
    return { ok: false, problem: "this stack has no earlier release to roll back to (no previousImageRef output)" };
  }
  if (requested !== previous.previousImageRef) {
    return {
      ok: false,
      problem: `the rollback asked for ${requested}, but the stack's rollback target is now ${previous.previousImageRef} (another update ran since); run the rollback again`,
    };
  }
  return { ok: true, target: requested, record: { fromImageRef: previous.imageRef, at: now.toISOString() } };
}
