/**
 * Running a stack for months, with the real Pulumi engine against the real Docker engine: image
 * retention over six real releases (the preview says what goes, the host keeps at most
 * `release.keepImages` + 1 of the stack's images, rollback still works, a target removed by hand is
 * refused with the fix), drift (`npm run drift`: none, then a release container removed by hand,
 * then none again after `pulumi up`), `npm run status` (text and JSON), the release's metrics port
 * (answering inside the release and on the stack's network, not through the proxy nor on any host
 * port), and destroy. One staging stack, in order. Needs the Pulumi CLI, the Docker engine and the local base and proxy images;
 * fails (never skips) without them.
 *
 * `CAPTURE_FIXTURES=1` also writes the drift previews it sees to test/fixtures/preview/.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StackOutputs } from "../components/contract";
import { PROJECT_LABEL, stackImageRepository } from "../components/release/images";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, inspectContainer, requireDockerEngine } from "../support/docker";
import { fixtureText, requirePulumiCli, scratchProject, type ScratchProject } from "../support/engine";
import { freePort, httpRequest } from "../support/wait";

const MINUTE = 60_000;
const CAPTURE = process.env.CAPTURE_FIXTURES === "1";
const KEEP = 2;

let p: ScratchProject;
let staging: Stack;
let port: number;
const secrets: string[] = [];

async function outputs(): Promise<StackOutputs> {
  return StackOutputs.parse(Object.fromEntries(Object.entries(await staging.outputs()).map(([k, v]) => [k, v.value])));
}

/** Ids of the stack's images on the host: the ones its own tag repository names. */
async function stackImages(): Promise<string[]> {
  const { stdout } = await docker(["image", "ls", "--no-trunc", "--format", "{{.ID}}", "--filter", `reference=${stackImageRepository(p.project, "staging")}:*`]);
  return [...new Set(stdout.split("\n").filter((l) => l !== ""))];
}

/** Ids of every image on the host that this project built (its label), tagged or not. */
async function projectImages(): Promise<string[]> {
  const { stdout } = await docker(["image", "ls", "-a", "--no-trunc", "--format", "{{.ID}}", "--filter", `label=${PROJECT_LABEL}=${p.project}`]);
  return [...new Set(stdout.split("\n").filter((l) => l !== ""))];
}

/** A new release of the backend: one changed source line, then `pulumi up`. */
async function newRelease(): Promise<string> {
  fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# release ${randomBytes(4).toString("hex")}\n`);
  await staging.up();
  return (await outputs()).imageRef;
}

/** The release container(s) of the stack. */
async function releases(): Promise<string[]> {
  const { stdout } = await docker(["ps", "-a", "--format", "{{.Names}}", "--filter", `name=^${p.project}-staging-app-`]);
  return stdout.split("\n").filter((l) => l !== "");
}

/** A Python one-liner that prints what `url` answers (the release image and the base both have Python). */
const fetchScript = (url: string): string => `import urllib.request; print(urllib.request.urlopen('${url}', timeout=5).read().decode())`;

/** `pulumi preview --refresh --expect-no-changes --json` captured as a fixture, when asked to. */
async function captureDriftPreview(name: string): Promise<void> {
  if (!CAPTURE) return;
  const res = await p.pulumi(["preview", "--refresh", "--expect-no-changes", "--json", "--stack", "staging"]);
  fs.writeFileSync(path.join(__dirname, "fixtures", "preview", `${name}.json`), fixtureText(res.stdout, p, secrets));
}

beforeAll(async () => {
  await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  p = scratchProject();
  port = await freePort();
  p.writeStackFile("staging", {
    environment: "staging",
    service: { hostPort: port },
    image: { baseImage: LOCAL_PYTHON_BASE, name: p.project },
    proxy: { image: LOCAL_PROXY_IMAGE },
    release: { keepImages: KEEP },
  });
}, 5 * MINUTE);

afterAll(async () => {
  await staging?.destroy().catch(() => undefined);
  if (p !== undefined) {
    for (const kind of ["container", "network", "volume"] as const) {
      const ls = await docker([kind, "ls", ...(kind === "container" ? ["-a"] : []), "--format", kind === "container" ? "{{.Names}}" : "{{.Name}}"], { allowFailure: true });
      for (const name of ls.stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`))) {
        await docker([kind, "rm", "-f", name].filter((a) => !(kind !== "container" && a === "-f")), { allowFailure: true });
      }
    }
    for (const id of await projectImages().catch(() => [])) await docker(["image", "rm", "-f", id], { allowFailure: true });
    p.cleanup();
  }
}, 10 * MINUTE);

describe("operations with the real Pulumi engine", () => {
  it("quick start; no drift right after (npm run drift exits 0 and records it); status shows the release", async () => {
    const up = await p.npm("up", ["staging", "--", "--yes"], { env: p.userEnv });
    expect(up.code, up.stdout + up.stderr).toBe(0);
    staging = await p.stack("staging");
    secrets.push((await p.pulumi(["config", "get", "--path", "secrets.SECRET_KEY", "--stack", "staging"])).stdout.trim());

    const drift = await p.npm("drift", ["staging"]);
    expect(drift.code, drift.stdout + drift.stderr).toBe(0);
    expect(drift.stdout).toContain("No drift: stack staging is as its Pulumi state records it");
    await captureDriftPreview("drift-none");

    const status = await p.npm("status", ["staging", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout) as Record<string, unknown> & { serving: { imageDigest: string; since: string; release: string }; drift: { status: string } };
    const o = await outputs();
    expect(s).toMatchObject({ stack: "staging", environment: "staging", url: `http://127.0.0.1:${port}`, drift: { status: "none", changes: 0 } });
    expect(s.serving.imageDigest).toBe(o.imageDigest);
    expect(await releases()).toEqual([s.serving.release]);
    expect(Date.now() - Date.parse(s.serving.since)).toBeLessThan(10 * MINUTE);
    expect(s.keptImages).toEqual([expect.objectContaining({ id: o.imageDigest })]);
    const text = await p.npm("status", ["staging"]);
    expect(text.stdout).toMatch(/Serving: +sha256:[0-9a-f]{64} since /);
    expect(text.stdout).toMatch(/Drift: +none, checked /);
    for (const value of secrets) expect(status.stdout + text.stdout + drift.stdout + drift.stderr).not.toContain(value);
  }, 10 * MINUTE);

  it("metrics: the release answers on its metrics port inside and on the stack's network, naming its digest; not through the proxy, on no host port", async () => {
    const [release] = await releases();
    const o = await outputs();
    const metricsUrl = "http://127.0.0.1:9000/metrics";
    const inside = await docker(["exec", release!, "/opt/venv/bin/python", "-c", fetchScript(metricsUrl)]);
    expect(inside.stdout).toContain(`image_digest="${o.imageDigest}"`);
    expect(inside.stdout).toMatch(/^backend_ready 1\.0$/m);
    // The readiness check's own requests, straight to the release.
    expect(inside.stdout).toMatch(/^backend_http_requests_total\{method="GET",route="\/readyz",status="2xx"\} [1-9]/m);
    // Where Prometheus would scrape it: another container on the stack's network, by the release's name.
    const peer = await docker(["run", "--rm", "--network", `${p.project}-staging-network`, LOCAL_PYTHON_BASE, "python3", "-c", fetchScript(`http://${release!}:9000/metrics`)]);
    expect(peer.stdout).toContain(`image_digest="${o.imageDigest}"`);
    // Through the proxy, the only way in from the host: the app's own 404, no metrics.
    const viaProxy = await httpRequest(`http://127.0.0.1:${port}/metrics`);
    expect(viaProxy.status).toBe(404);
    expect(viaProxy.body).not.toContain("backend_");
    // The image exposes the app's port alone, and the release publishes none.
    expect((await inspectContainer(release!)).NetworkSettings.Ports ?? {}).toEqual({ "8000/tcp": null });
    for (const value of secrets) expect(inside.stdout + peer.stdout).not.toContain(value);
  }, 2 * MINUTE);

  it("drift: a release container removed by hand is found (exit 1, named), status says so, and `pulumi up` puts it back", async () => {
    const [release] = await releases();
    await docker(["rm", "-f", release!]);
    const drift = await p.npm("drift", ["staging"]);
    expect(drift.code, drift.stdout + drift.stderr).toBe(1);
    expect(drift.stdout).toMatch(/^Drift: stack staging differs in \d+ resource\(s\)/m);
    expect(drift.stdout).toContain(`${p.project}-staging-release`);
    await captureDriftPreview("drift-release-removed");
    const status = JSON.parse((await p.npm("status", ["staging", "--json"])).stdout) as { drift: { status: string; changes: number } };
    expect(status.drift.status).toBe("drift");
    expect(status.drift.changes).toBeGreaterThan(0);

    await staging.up({ refresh: true });
    expect((await httpRequest(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const again = await p.npm("drift", ["staging"]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  }, 10 * MINUTE);

  it(`six releases leave at most keepImages + 1 (${KEEP + 1}) images of the stack; the preview says what goes`, async () => {
    const ran: string[] = [(await outputs()).imageRef];
    for (let i = 0; i < 6; i++) {
      if (i === 3) {
        // Before an update that will remove images: the preview names them.
        fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# preview ${i}\n`);
        const preview = await p.pulumi(["preview", "--stack", "staging"]);
        expect(preview.code, preview.stderr).toBe(0);
        expect(preview.stdout).toMatch(/once the new release serves, this update \(if it builds a new image\) removes \d+ older image\(s\): [0-9a-f]{12}/);
      }
      ran.push(await newRelease());
      const kept = await stackImages();
      expect(kept.length).toBeLessThanOrEqual(KEEP + 1);
      expect(kept).toContain(ran.at(-1));
      expect(kept).toContain(ran.at(-2));
    }
    // Every other image this project built is gone from the host, tagged or not.
    expect((await projectImages()).sort()).toEqual((await stackImages()).sort());
    await staging.preview({ expectNoChanges: true });
  }, 20 * MINUTE);

  it("rollback still works after pruning, and a target removed by hand is refused with the fix, nothing changed", async () => {
    const before = await outputs();
    const back = await p.npm("rollback", ["staging", "--", "--yes"]);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    const after = await outputs();
    expect(after.imageRef).toBe(before.previousImageRef);
    expect((await httpRequest(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    // The target is now the image rolled back from; take it off the host by hand.
    await docker(["image", "rm", "-f", String(after.previousImageRef)]);
    const refused = await p.npm("rollback", ["staging", "--", "--yes"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain(`its rollback target ${String(after.previousImageRef)} is no longer on the Docker host`);
    expect(refused.stdout + refused.stderr).toContain("Roll forward instead");
    expect(await outputs()).toEqual(after);
  }, 10 * MINUTE);

  it("destroy leaves no container, network or volume; of the stack's images only the last one it ran, under its tag", async () => {
    const last = (await outputs()).imageRef;
    await staging.destroy();
    expect(await releases()).toEqual([]);
    // The release container still used it when the stack's tags were dropped (the engine refuses to
    // untag an image in use); a stack of the same name adopts it again, nothing else touches it.
    expect(await stackImages()).toEqual([last]);
    const volumes = (await docker(["volume", "ls", "--format", "{{.Name}}"])).stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`));
    expect(volumes).toEqual([]);
  }, 10 * MINUTE);
});
