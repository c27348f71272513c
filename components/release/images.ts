/**
 * Which of a stack's images a Docker host keeps after an update, and which go. Pure: no I/O, no
 * Pulumi runtime; the dynamic provider beside it (imagesProvider.ts) asks the engine and acts.
 *
 * A stack's images on a host are the ones carrying its own reference, a tag in the repository
 * {@link stackImageRepository}: every stack tags the image it runs. Labels are fixed when an image is
 * built and so are shared by every stack that runs the same bytes (staging builds what prod runs);
 * a tag per stack is what tells them apart. The project label {@link PROJECT_LABEL}, set at build
 * time, is required as well, so an image the program did not build is never touched, whatever tags
 * someone gave it. The engine keeps an image while any other reference (another stack's tag) or any
 * container holds it, and the provider never forces.
 */

/** The label the program sets on every image it builds (the `DELIVERY_PROJECT` build argument). */
export const PROJECT_LABEL = "backend-delivery.project";

/** The repository of a stack's own image references: lowercase, Docker's rules, derived from no value. */
export function stackImageRepository(project: string, stack: string): string {
  const clean = (part: string) =>
    part
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "") || "x";
  return `${clean(project)}-${clean(stack)}-images`;
}

/** The tag a stack gives an image: its repository and the first 12 hex digits of the image id. */
export function stackImageTag(repository: string, imageId: string): string {
  return `${repository}:${imageId.replace(/^sha256:/, "").slice(0, 12)}`;
}

/** An image of the stack on a host, as the engine describes it. */
export interface StackImage {
  /** `sha256:<64 hex>`. */
  id: string;
  /** ISO-8601 build time. */
  created: string;
}

/** What a host keeps and removes. */
export interface PrunePlan {
  /** Image ids kept: the serving image, the rollback target, the newest `keepImages`. */
  keep: string[];
  /** Image ids whose stack reference goes (and the image with it, when nothing else holds it). */
  remove: string[];
}

/**
 * The plan for `images` (the stack's images on one host): keep `pinned` (the serving image and the
 * rollback target, as host image ids; either may be absent from `images`) and the `keepImages`
 * newest by build time; remove the rest. At most `keepImages` + the pinned images outside the newest
 * are kept.
 */
export function prunePlan(images: readonly StackImage[], pinned: readonly string[], keepImages: number): PrunePlan {
  if (!Number.isInteger(keepImages) || keepImages < 1) throw new RangeError(`keepImages must be an integer of at least 1, got ${keepImages}`);
  const newest = [...images].sort((a, b) => Date.parse(b.created) - Date.parse(a.created) || b.id.localeCompare(a.id)).slice(0, keepImages);
  const keep = new Set([...pinned, ...newest.map((i) => i.id)]);
  const present = new Set(images.map((i) => i.id));
  return {
    keep: [...keep].filter((id) => present.has(id) || pinned.includes(id)).sort(),
    remove: images.map((i) => i.id).filter((id) => !keep.has(id)).sort(),
  };
}

/**
 * What an update that runs a *new* image (one not on the host yet, so the newest) would remove: the
 * serving image becomes the rollback target, and the new one takes one of the `keepImages` places.
 * For the preview of an update whose image is not built yet.
 */
export function prunePlanForNewImage(images: readonly StackImage[], serving: string | undefined, keepImages: number): PrunePlan {
  const pinned = serving === undefined ? [] : [serving];
  if (keepImages === 1) {
    return { keep: pinned, remove: images.map((i) => i.id).filter((id) => !pinned.includes(id)).sort() };
  }
  return prunePlan(images, pinned, keepImages - 1);
}
