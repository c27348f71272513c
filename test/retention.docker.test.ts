/**
 * Image retention against the real Docker engine: what `pruneStackImages` (the ReleaseImages
 * provider's work) removes and what it must leave, on images made for the test (`FROM scratch`, a
 * label each, nothing pulled). Needs the Docker engine; fails, never skips, without it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_LABEL, stackImageRepository, stackImageTag } from "../components/release/images";
import { pruneStackImages, releaseImagesProvider, type ReleaseImagesInputs } from "../components/release/imagesProvider";
import { docker, requireDockerEngine, uniqueName } from "../support/docker";

const project = uniqueName("retain");
const repository = stackImageRepository(project, "staging");
const otherStack = stackImageRepository(project, "prod");
const made: string[] = [];
const containers: string[] = [];

/** Builds a distinct empty image with the project label (or `label`), and returns its id. */
async function image(n: number, label: string | null = project): Promise<string> {
  const labels = label === null ? [] : ["--label", `${PROJECT_LABEL}=${label}`];
  const res = await docker(["build", "-q", "--label", `test=${project}-${n}`, ...labels, "-"], { input: `FROM scratch\nLABEL n=${n}\n` });
  const id = res.stdout.trim();
  made.push(id);
  return id;
}

/** Gives `id` the tag of `repo` (what a stack's retention does to the image it serves). */
async function tag(id: string, repo = repository): Promise<void> {
  await docker(["tag", id, stackImageTag(repo, id)]);
}

async function exists(id: string): Promise<boolean> {
  return (await docker(["image", "inspect", id], { allowFailure: true })).code === 0;
}

async function tagsOf(id: string): Promise<string[]> {
  return JSON.parse((await docker(["image", "inspect", "--format", "{{json .RepoTags}}", id])).stdout) as string[];
}

const inputs = (serving: string, previous: string | undefined, keepImages: number): ReleaseImagesInputs => ({
  project,
  repository,
  keepImages,
  serving,
  ...(previous === undefined ? {} : { previous }),
  planned: [],
});

beforeAll(async () => {
  await requireDockerEngine();
});

afterAll(async () => {
  if (containers.length > 0) await docker(["rm", "-f", ...containers], { allowFailure: true });
  const refs = (await docker(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", `reference=${project}-*`], { allowFailure: true })).stdout
    .split("\n")
    .filter((r) => r !== "");
  if (refs.length > 0) await docker(["image", "rm", ...refs], { allowFailure: true });
  for (const id of made) await docker(["image", "rm", id], { allowFailure: true });
});

describe("pruneStackImages on the real engine", () => {
  it("six releases: keeps the serving image, the rollback target and the newest keepImages, removes the rest", async () => {
    const ids: string[] = [];
    for (let n = 1; n <= 6; n++) {
      ids.push(await image(n));
      await tag(ids[n - 1]!);
      // Build times a second apart, so "newest" is not a tie.
      await new Promise((resolve) => setTimeout(resolve, 1100));
    }
    const [i1, i2, i3, i4, i5, i6] = ids as [string, string, string, string, string, string];
    const result = await pruneStackImages(inputs(i6, i5, 2));
    expect(result.removed.sort()).toEqual([i1, i2, i3, i4].sort());
    expect(result.kept.sort()).toEqual([i5, i6].sort());
    for (const id of [i1, i2, i3, i4]) expect(await exists(id)).toBe(false);
    for (const id of [i5, i6]) expect(await exists(id)).toBe(true);
  }, 120_000);

  it("tags the serving image itself, and a second run with nothing new removes nothing", async () => {
    const fresh = await image(10);
    const result = await pruneStackImages(inputs(fresh, undefined, 5));
    expect(await tagsOf(fresh)).toContain(stackImageTag(repository, fresh));
    expect((await pruneStackImages(inputs(fresh, undefined, 5))).removed).toEqual([]);
    expect(result.kept).toContain(fresh);
  });

  it("never removes an image another stack still tags, nor one a container uses: it only drops its own tag", async () => {
    const shared = await image(20);
    const used = await image(21);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const serving = await image(22);
    await tag(shared);
    await tag(shared, otherStack);
    await tag(used);
    const container = uniqueName("retain-user");
    await docker(["create", "--name", container, used, "/nothing"]);
    containers.push(container);

    const result = await pruneStackImages(inputs(serving, undefined, 1));
    expect(result.removed).not.toContain(shared);
    expect(result.removed).not.toContain(used);
    expect(await exists(shared)).toBe(true);
    expect(await tagsOf(shared)).toEqual([stackImageTag(otherStack, shared)]);
    expect(await exists(used)).toBe(true);
  }, 60_000);

  it("never touches an image without the project's label, or with another project's, whatever its tags", async () => {
    const unlabeled = await image(30, null);
    const foreign = await image(31, "another-project");
    await tag(unlabeled);
    await tag(foreign);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const serving = await image(32);
    const result = await pruneStackImages(inputs(serving, undefined, 1));
    for (const id of [unlabeled, foreign]) {
      expect(result.removed).not.toContain(id);
      expect(await tagsOf(id)).toEqual([stackImageTag(repository, id)]);
    }
  }, 60_000);

  it("keeps a rollback target the host has lost without failing", async () => {
    const serving = await image(40);
    const result = await pruneStackImages(inputs(serving, `sha256:${"0".repeat(64)}`, 1));
    expect(result.kept).toContain(serving);
  });

  it("on delete (destroy), drops the stack's tags: an image only they held goes, one another stack tags stays", async () => {
    // A stack of its own, so the images the other tests left (one a container still uses) do not count.
    const gone = stackImageRepository(project, "destroyed");
    const mine = await image(50);
    const shared = await image(51);
    await tag(mine, gone);
    await tag(shared, gone);
    await tag(shared, otherStack);
    await releaseImagesProvider.delete!(`${gone}@local`, { ...inputs(mine, undefined, 1), repository: gone, kept: [], removed: [] });
    expect(await exists(mine)).toBe(false);
    expect(await tagsOf(shared)).toEqual([stackImageTag(otherStack, shared)]);
    const left = (await docker(["image", "ls", "--format", "{{.Repository}}", "--filter", `reference=${gone}:*`])).stdout.trim();
    expect(left).toBe("");
  }, 60_000);
});
