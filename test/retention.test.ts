/**
 * Image retention: the plan (which of a stack's images a host keeps), and how the program hands it
 * to the `ReleaseImages` resource and prints it in a preview, under Pulumi's mocks. What the engine
 * does with it is test/retention.docker.test.ts and the end-to-end suite.
 */
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { prunePlan, prunePlanForNewImage, stackImageRepository, stackImageTag, type StackImage } from "../components/release/images";
import { plannedRemovals, type HostRetention } from "../components/release/retention";
import { canaryDatabaseUrl } from "../support/canary";
import { PROJECT, awaitOutput, fakeDigest, removeStackFiles, settle, setUpStack, stagingSetup, type FakeHostImages, type RecordingMocks, type RegistryCheckCall } from "../support/mocks";
import { stagingRecord } from "../support/stagingRecord";

afterAll(removeStackFiles);

const host = vi.hoisted(() => ({ calls: [] as RegistryCheckCall[], images: { reads: [] } as FakeHostImages }));
vi.mock("../components/docker/preflight", async (importOriginal) =>
  (await import("../support/mocks")).recordingPreflight(importOriginal, host.calls, {}, host.images),
);

const id = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
/** Images 1..n, built an hour apart, image n the newest. */
const images = (n: number): StackImage[] => Array.from({ length: n }, (_, i) => ({ id: id(i + 1), created: new Date(Date.UTC(2030, 0, 1, i)).toISOString() }));

describe("prunePlan", () => {
  it("keeps the pinned images and the newest keepImages, removes the rest", () => {
    expect(prunePlan(images(6), [id(6), id(5)], 3)).toEqual({ keep: [id(4), id(5), id(6)], remove: [id(1), id(2), id(3)] });
  });

  it("keeps a rollback target outside the newest: keepImages + 1 at most", () => {
    // After a rollback to 2, the stack serves 2 and its target is 6.
    expect(prunePlan(images(6), [id(2), id(6)], 3)).toEqual({ keep: [id(2), id(4), id(5), id(6)], remove: [id(1), id(3)] });
  });

  it("removes nothing while the stack holds no more than keepImages", () => {
    expect(prunePlan(images(3), [id(3)], 3).remove).toEqual([]);
  });

  it("keeps a pinned image the host no longer lists (it may come back with a pull)", () => {
    expect(prunePlan(images(2), [id(9)], 1)).toEqual({ keep: [id(2), id(9)], remove: [id(1)] });
  });

  it.each([0, -1, 1.5])("refuses keepImages %s", (keep) => {
    expect(() => prunePlan(images(2), [], keep)).toThrow(/keepImages must be an integer of at least 1/);
  });

  it("orders by build time, not by id", () => {
    const mixed: StackImage[] = [
      { id: id(9), created: "2030-01-01T00:00:00.000Z" },
      { id: id(1), created: "2030-01-02T00:00:00.000Z" },
    ];
    expect(prunePlan(mixed, [], 1)).toEqual({ keep: [id(1)], remove: [id(9)] });
  });
});

describe("prunePlanForNewImage", () => {
  it("counts the new image among the newest: the serving one becomes the rollback target", () => {
    // Serving 5; a new image takes one of 3 places, so 4 and 5 stay beside it, 1-3 go.
    expect(prunePlanForNewImage(images(5), id(5), 3)).toEqual({ keep: [id(4), id(5)], remove: [id(1), id(2), id(3)] });
  });

  it("keepImages 1: only the rollback target stays beside the new image", () => {
    expect(prunePlanForNewImage(images(3), id(3), 1)).toEqual({ keep: [id(3)], remove: [id(1), id(2)] });
  });

  it("with nothing served yet, keeps keepImages - 1 of what is there", () => {
    expect(prunePlanForNewImage(images(3), undefined, 2)).toEqual({ keep: [id(3)], remove: [id(1), id(2)] });
  });
});

describe("the stack's own image references", () => {
  it("are a lowercase repository of Docker's grammar, derived from project and stack", () => {
    expect(stackImageRepository("backend-delivery", "staging")).toBe("backend-delivery-staging-images");
    expect(stackImageRepository("My_Project", "Dev.Stack")).toBe("my-project-dev-stack-images");
    expect(stackImageRepository("__", "--")).toBe("x-x-images");
    for (const repo of [stackImageRepository("A..b", "c__D"), stackImageRepository("e2e-1a2b3c", "prod")]) {
      expect(repo).toMatch(/^[a-z0-9]+([._-][a-z0-9]+)*$/);
    }
  });

  it("tag an image by the first 12 hex digits of its id", () => {
    expect(stackImageTag("p-s-images", `sha256:${"ab".repeat(32)}`)).toBe(`p-s-images:${"ab".repeat(6)}`);
  });
});

describe("plannedRemovals (the program's plan from what the host holds)", () => {
  const hostWith = (n: number, known: Record<string, string>): HostRetention => ({ repository: "r", images: images(n), hostIds: new Map(Object.entries(known)) });

  it("a new image (unknown to the host): the new-image plan", () => {
    expect(plannedRemovals(hostWith(5, { "repo@sha256:5": id(5) }), "repo@sha256:new", "repo@sha256:5", 3)).toEqual([id(1), id(2), id(3)]);
  });

  it("an image the host holds (a rerun, a rollback): it and the target pinned", () => {
    expect(plannedRemovals(hostWith(5, { a: id(2), b: id(5) }), "a", "b", 2)).toEqual([id(1), id(3)]);
  });
});

describe("the program hands the plan to ReleaseImages", () => {
  const STAGING = `organization/${PROJECT}/staging`;
  const SELF_PROD = `organization/${PROJECT}/prod`;
  const DYNAMIC = "pulumi-nodejs:dynamic:Resource";
  const DIGEST = `sha256:${"d".repeat(64)}`;
  const { outputs: stagingOutputs } = stagingRecord({ digest: DIGEST, checkedAt: new Date(Date.now() - 60_000).toISOString(), version: "1.2.3" });
  let info: ReturnType<typeof vi.spyOn>;
  /** What the host holds for the next run; the stand-in keeps reading the same object. */
  const holds = (state: Omit<FakeHostImages, "reads">) => {
    host.images.reads.length = 0;
    host.images.images = state.images;
    host.images.hostIds = state.hostIds;
  };
  beforeEach(() => {
    holds({});
    info = vi.spyOn(pulumi.log, "info").mockImplementation(() => Promise.resolve());
  });
  afterEach(() => info.mockRestore());

  async function run(): Promise<{ mocks: RecordingMocks; outputs: Record<string, unknown> }> {
    vi.resetModules();
    const program = (await import("../index")).default as unknown as () => Promise<Record<string, unknown>>;
    const outputs = await settle(await program());
    return { mocks, outputs };
  }
  let mocks: RecordingMocks;
  const retentionOf = (stack: string) => mocks.byName(`${PROJECT}-${stack}-images`, DYNAMIC).inputs;
  const infoLines = (): string[] => info.mock.calls.map((call: unknown[]) => String(call[0]));

  it("prod: keeps 3 by default, pins the promoted image and the rollback target, plans the removal and prints it", async () => {
    // Prod serves 5 (its target is 4); the promoted digest is new to the host.
    holds({ images: images(5), hostIds: { [id(5)]: id(5), [id(4)]: id(4) } });
    ({ mocks } = await setUpStack({
      stack: "prod",
      config: {
        environment: "prod",
        service: { hostPort: 8081 },
        proxy: { tls: { mode: "upstream" } },
        secrets: { DATABASE_URL: canaryDatabaseUrl("prod-canary-pw"), SECRET_KEY: "prod-canary-key-5b1e-0123456789abcdef012345" },
      },
      encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY"],
      mocks: { stacks: { [STAGING]: stagingOutputs(), [SELF_PROD]: { imageRef: id(5), previousImageRef: id(4) } } },
    }));
    await run();
    const inputs = retentionOf("prod");
    expect(inputs).toMatchObject({
      project: PROJECT,
      repository: `${PROJECT}-prod-images`,
      keepImages: 3,
      serving: DIGEST,
      previous: id(5),
      planned: [id(1), id(2), id(3)],
    });
    expect(host.images.reads).toEqual([[{}, PROJECT, "prod", [id(5), id(4), DIGEST]]]);
    expect(infoLines()).toContainEqual(
      `stack prod keeps its serving image, its rollback target and its 3 newest on the local Docker engine; once the new release serves, this update removes 3 older image(s): ${[1, 2, 3].map((n) => String(n).repeat(12)).join(", ")}`,
    );
  });

  it("staging: release.keepImages is honoured; the plan follows the built image, and a new build is announced as such", async () => {
    holds({ images: images(4), hostIds: { [id(4)]: id(4) } });
    const setup = stagingSetup({ mocks: { stacks: { [STAGING]: { imageRef: id(4) } } } });
    setup.config.release = { keepImages: 2 };
    ({ mocks } = await setUpStack(setup));
    await run();
    const inputs = retentionOf("staging");
    expect(inputs.keepImages).toBe(2);
    expect(inputs.serving).toBe(fakeDigest(`${PROJECT}-staging-image`));
    expect(inputs.previous).toBe(id(4));
    // The fake build is new to the host: 4 stays as the target, one place is the new image's.
    expect(await awaitOutput(inputs.planned as string[])).toEqual([id(1), id(2), id(3)]);
    expect(infoLines().some((l) => l.includes("this update (if it builds a new image) removes 3 older image(s)"))).toBe(true);
  });

  it("nothing is planned or printed while the host holds no more than keepImages", async () => {
    holds({ images: images(2), hostIds: { [id(2)]: id(2) } });
    ({ mocks } = await setUpStack(stagingSetup({ mocks: { stacks: { [STAGING]: { imageRef: id(2) } } } })));
    await run();
    expect(retentionOf("staging").planned).toEqual([]);
    expect(infoLines().some((l) => l.includes("older image(s)"))).toBe(false);
  });
});
