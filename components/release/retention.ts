/**
 * The program's side of image retention: at its start (in previews too) it reads which of the
 * stack's images each Docker host holds (`readHostRetention`, docker/preflight.ts), so that the plan of what an update will remove is part of
 * the preview (an input of the `ReleaseImages` resource, and one line the preview prints). The
 * removal itself happens in the resource, after the switch (imagesProvider.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import { prunePlan, prunePlanForNewImage, type StackImage } from "./images";

/** What one host holds of the stack, read at the program's start. */
export interface HostRetention {
  /** The stack's tag repository. */
  repository: string;
  /** The stack's images on the host. */
  images: StackImage[];
  /** Host image id of an image reference, when the host holds it. */
  hostIds: Map<string, string>;
}

/**
 * The image ids an update will remove from the host, when it runs `next` with the rollback target
 * `previous` (both image references): `next` is new to the host (a fresh build or pull) or one it
 * holds (a rerun, a rotation, a rollback).
 */
export function plannedRemovals(host: HostRetention, next: string, previous: string | undefined, keepImages: number): string[] {
  const nextId = host.hostIds.get(next);
  const previousId = previous === undefined ? undefined : host.hostIds.get(previous);
  if (nextId === undefined) return prunePlanForNewImage(host.images, previousId, keepImages).remove;
  return prunePlan(host.images, [nextId, ...(previousId === undefined ? [] : [previousId])], keepImages).remove;
}

/**
 * The one line a preview (and an update) prints about what it will remove; none when nothing goes.
 * `condition` says when the plan holds, e.g. "if it builds a new image".
 */
export function logPlannedRemovals(stack: string, where: string, removals: readonly string[], keepImages: number, condition = ""): void {
  if (removals.length === 0) return;
  void pulumi.log.info(
    `stack ${stack} keeps its serving image, its rollback target and its ${keepImages} newest on ${where}; ` +
      `once the new release serves, this update${condition === "" ? "" : ` ${condition}`} removes ${removals.length} older image(s): ${shortIds(removals)}`,
  );
}

/** Image ids as the line names them: their first 12 hex digits. */
const shortIds = (ids: readonly string[]): string => ids.map((id) => id.replace(/^sha256:/, "").slice(0, 12)).join(", ");

/**
 * The line a Swarm stack's preview (and update) prints, always: the same rules hold on every node
 * that ran the service's tasks, but only each node knows what it holds; `removals` is the plan for
 * the manager's own images (read at the program's start), the one node the program can ask.
 */
export function logSwarmPlannedRemovals(stack: string, manager: string, removals: readonly string[], keepImages: number, condition = ""): void {
  const there = `on the manager, ${manager}: ${removals.length === 0 ? "none" : `${removals.length} older image(s): ${shortIds(removals)}`}`;
  void pulumi.log.info(
    `stack ${stack} keeps its serving image, its rollback target and its ${keepImages} newest on every Swarm node that ran its tasks; ` +
      `once the new release serves, this update${condition === "" ? "" : ` ${condition}`} removes the older ones there (${there})`,
  );
}
