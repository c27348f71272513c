/**
 * The dynamic provider that keeps a stack's images on one Docker host in bounds (images.ts says
 * which): after the switch to a new release, it gives the serving image the stack's own tag, then
 * takes the tag off every image the plan removes. The engine deletes an image when that was its last
 * reference and no container uses it; an image another stack still tags, or a container uses, stays.
 * Nothing is ever forced. Pulumi serializes this provider into its own process: plain functions and
 * `require`d packages only.
 */
import * as pulumi from "@pulumi/pulumi";
import { dockerClient } from "../docker/client";
import { PROJECT_LABEL, prunePlan, stackImageTag, type StackImage } from "./images";

/** What the provider is given, resolved. */
export interface ReleaseImagesInputs {
  /** The project whose label an image must carry to be touched. */
  project: string;
  /** The stack's own tag repository (images.ts, `stackImageRepository`). */
  repository: string;
  /** How many of the newest images the stack keeps besides the serving one and the rollback target. */
  keepImages: number;
  /** The image the stack serves now, as the host knows it (an image id or `<repo>@sha256:...`). */
  serving: string;
  /** The rollback target, likewise; it may be gone from the host. */
  previous?: string;
  /** Image ids the program expected this update to remove; only what the preview shows. */
  planned: string[];
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What it records: its inputs, and what the last run kept and removed. */
export interface ReleaseImagesOutputs extends ReleaseImagesInputs {
  kept: string[];
  removed: string[];
}

type Engine = ReturnType<typeof dockerClient>;

/** The image `ref` as the engine describes it, or undefined when the host does not hold it. */
function inspectImage(docker: Engine, ref: string): Promise<Awaited<ReturnType<ReturnType<Engine["getImage"]>["inspect"]>> | undefined> {
  return docker
    .getImage(ref)
    .inspect()
    .catch((error: unknown) => {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    });
}

/**
 * Removes the reference `ref` (a tag, or an image id), never forced: true when it is gone, false
 * when the engine keeps it (a container uses the image: 409).
 */
function removeReference(docker: Engine, ref: string): Promise<boolean> {
  return docker
    .getImage(ref)
    .remove()
    .then(() => true)
    .catch((error: unknown) => {
      const status = (error as { statusCode?: number }).statusCode;
      if (status === 404) return true;
      if (status === 409) return false;
      throw error;
    });
}

/** The stack's images on the host: the ones its own repository tags and the project's label marks. */
async function stackImages(inputs: ReleaseImagesInputs): Promise<(StackImage & { tags: string[] })[]> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const listed = await docker.listImages({ filters: JSON.stringify({ reference: [`${inputs.repository}:*`] }) });
  return listed
    .filter((image) => image.Labels?.[PROJECT_LABEL] === inputs.project)
    .map((image) => ({
      id: image.Id,
      created: new Date(image.Created * 1000).toISOString(),
      tags: (image.RepoTags ?? []).filter((tag) => tag.startsWith(`${inputs.repository}:`)),
    }));
}

/** Tags the serving image, then removes what the plan says; returns what was kept and removed. */
export async function pruneStackImages(inputs: ReleaseImagesInputs): Promise<{ kept: string[]; removed: string[] }> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const serving = await docker.getImage(inputs.serving).inspect();
  if (serving.Config?.Labels?.[PROJECT_LABEL] === inputs.project) {
    const [repo, tag] = stackImageTag(inputs.repository, serving.Id).split(":") as [string, string];
    await docker.getImage(serving.Id).tag({ repo, tag });
  }
  const pinned = [serving.Id];
  const previous = inputs.previous === undefined ? undefined : await inspectImage(docker, inputs.previous);
  if (previous !== undefined) pinned.push(previous.Id);
  const images = await stackImages(inputs);
  const plan = prunePlan(images, pinned, inputs.keepImages);
  const removed: string[] = [];
  for (const id of plan.remove) {
    // A container that uses the image keeps our tag on it too (the engine refuses: 409).
    for (const tag of images.find((image) => image.id === id)?.tags ?? []) await removeReference(docker, tag);
    const left = await inspectImage(docker, id);
    // Still referenced only by digests of the pull that brought it (a registry image): those are this
    // host's copy of it, not another stack's claim. A tag of anyone else's, or a container, keeps it.
    if (left === undefined || ((left.RepoTags ?? []).length === 0 && (await removeReference(docker, id)))) removed.push(id);
  }
  return { kept: plan.keep, removed };
}

/** The inputs that make a new run; `planned` counts only when it names something. */
function changed(olds: ReleaseImagesInputs, news: ReleaseImagesInputs): string[] {
  const keys = ["project", "repository", "keepImages", "serving", "previous", "dockerHost"] as const;
  const diffs: string[] = keys.filter((key) => (olds[key] ?? null) !== (news[key] ?? null));
  if (news.planned.length > 0) diffs.push("planned");
  return diffs;
}

/** The provider; see the module comment. */
export const releaseImagesProvider: pulumi.dynamic.ResourceProvider<ReleaseImagesInputs, ReleaseImagesOutputs> = {
  async diff(_id, olds, news) {
    const diffs = changed(olds, news);
    return { changes: diffs.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    return { id: `${inputs.repository}@${inputs.dockerHost ?? "local"}`, outs: { ...inputs, ...(await pruneStackImages(inputs)) } };
  },
  async update(_id, _olds, news) {
    return { outs: { ...news, ...(await pruneStackImages(news)) } };
  },
  // The stack's tags go with it; an image they alone held goes too, one a container or another
  // stack still holds stays.
  async delete(_id, props) {
    const docker = dockerClient(props.dockerHost, props.dockerSshOpts);
    for (const tag of (await stackImages(props)).flatMap((image) => image.tags)) await removeReference(docker, tag);
  },
};

/**
 * A stack's images on one Docker host, kept to the serving image, the rollback target and the
 * `keepImages` newest; see {@link releaseImagesProvider}. Register it after the switch to the new
 * release (`dependsOn` the route), so a failed update never prunes.
 */
export class ReleaseImages extends pulumi.dynamic.Resource {
  // `declare`, not class fields: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** Image ids the last run kept. */
  declare public readonly kept: pulumi.Output<string[]>;
  /** Image ids the last run removed. */
  declare public readonly removed: pulumi.Output<string[]>;

  constructor(name: string, args: { [K in keyof ReleaseImagesInputs]: pulumi.Input<ReleaseImagesInputs[K]> }, opts: pulumi.CustomResourceOptions = {}) {
    super(releaseImagesProvider, name, { ...args, kept: undefined, removed: undefined }, opts);
  }
}
