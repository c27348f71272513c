/**
 * What proving the supply chain costs, with the real engine, cosign and syft against a throwaway
 * registry on this machine:
 *
 * - staging: a `pulumi up` with a new image, in which the signing resource (SBOM of the pushed digest,
 *   signature, attestation) runs beside the deploy; what it adds to the update is how long the update
 *   goes on after every other resource is done (engine events, timed as they arrive), and its own
 *   duration is reported too (goal: <= 20 s added);
 * - prod: the gate's verification of the signature and the SBOM attestation (what runs before any prod
 *   resource, in every update and preview), timed on its own (goal: <= 5 s);
 * - preview: `pulumi preview` of staging with the policy pack against the same preview without it,
 *   medians of 3 each (goal: <= 3 s).
 *
 * Writes bench-results/supply-chain.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { verifyImage } from "../../components/supplyChain/verify";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, dockerHostAddress, requireDockerEngine } from "../../support/docker";
import { requirePulumiCli, scratchProject } from "../../support/engine";
import { LOCAL_REGISTRY_IMAGE, startRegistry } from "../../support/registry";
import { makeCosignKeys } from "../../support/signingKeys";
import { freePort } from "../../support/wait";
import { seconds, writeResults } from "./results";

const ROUNDS = 3;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  const [registry, keys] = await Promise.all([startRegistry({ address: await dockerHostAddress() }), makeCosignKeys()]);
  const p = scratchProject();
  try {
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const repository = `${p.project}/backend`;
    p.writeStackFile("staging", {
      environment: "staging",
      service: { hostPort: await freePort() },
      image: { baseImage: LOCAL_PYTHON_BASE, name: repository, registry: { server: registry.server, username: registry.username } },
      proxy: { image: LOCAL_PROXY_IMAGE },
    });
    const staging = await p.stack("staging");
    await p.setSecret("staging", "secrets.DATABASE_URL", "sqlite:////data/app.db");
    await p.setSecret("staging", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    await p.setSecret("staging", "registryPassword", registry.password);
    await p.setSecret("staging", "cosignPrivateKey", keys.privateKey);
    await p.setSecret("staging", "cosignPassword", keys.password);
    // Layers cached, stack deployed and signed once before anything is timed.
    await staging.up();

    const rounds: { updateSeconds: number; signingSeconds: number; addedSeconds: number; sbomPackages: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# release ${i}\n`);
      const done = new Map<string, number>();
      let signingStarted = 0;
      // A replacement is several steps (create-replacement, replace, delete-replaced); the work is the first.
      const working = new Set(["create", "create-replacement", "update"]);
      const onEvent = (event: EngineEvent) => {
        const now = Date.now();
        const pre = event.resourcePreEvent?.metadata;
        if (pre?.urn.endsWith("-signature") === true && working.has(pre.op) && signingStarted === 0) signingStarted = now;
        const out = event.resOutputsEvent?.metadata;
        if (out !== undefined && working.has(out.op)) done.set(out.urn, now);
      };
      const started = Date.now();
      await staging.up({ onEvent });
      const ended = Date.now();
      const signed = [...done].find(([urn]) => urn.endsWith("-signature"));
      if (signed === undefined || signingStarted === 0) throw new Error("the update did not sign a new image");
      const others = [...done].filter(([urn]) => !urn.endsWith("-signature") && !urn.includes("::pulumi:pulumi:Stack::") && !urn.includes("ImageSignature")).map(([, t]) => t);
      const record = (await staging.outputs()).supplyChain?.value as { sbom: { packages: number } };
      rounds.push({
        updateSeconds: seconds(ended - started),
        signingSeconds: seconds(signed[1] - signingStarted),
        addedSeconds: seconds(Math.max(0, signed[1] - Math.max(...others))),
        sbomPackages: record.sbom.packages,
      });
    }

    const imageRef = (await staging.outputs()).imageRef?.value as string;
    const login = { server: registry.server, username: registry.username, password: registry.password };
    const verifications: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const started = Date.now();
      const check = await verifyImage({ imageRef, login }, keys.publicKey);
      if (!check.verified) throw new Error(`verification failed: ${JSON.stringify(check.problems)}`);
      verifications.push(Date.now() - started);
    }

    const previews: Record<"with" | "without", number[]> = { with: [], without: [] };
    for (let i = 0; i < ROUNDS; i++) {
      for (const kind of ["without", "with"] as const) {
        const started = Date.now();
        const res = await p.pulumi(["preview", "--stack", "staging", ...(kind === "with" ? ["--policy-pack", "policy"] : [])]);
        if (res.code !== 0) throw new Error(`pulumi preview failed: ${res.stderr}`);
        previews[kind].push(Date.now() - started);
      }
    }
    await staging.destroy();

    const result = {
      machine: "2 cores, shared; cosign v3.1.3 and syft v1.57.1 built from source; registry on this machine",
      stagingUpdateWithNewImage: {
        addedBySigningSecondsMedian: median(rounds.map((r) => r.addedSeconds)),
        signingResourceSecondsMedian: median(rounds.map((r) => r.signingSeconds)),
        updateSecondsMedian: median(rounds.map((r) => r.updateSeconds)),
        goalAddedSeconds: 20,
        rounds,
      },
      prodGateVerification: { secondsMedian: seconds(median(verifications)), goalSeconds: 5, rounds: verifications.map(seconds) },
      previewPolicyPack: {
        addedSecondsMedian: seconds(median(previews.with) - median(previews.without)),
        withSecondsMedian: seconds(median(previews.with)),
        withoutSecondsMedian: seconds(median(previews.without)),
        goalSeconds: 3,
        rounds: { with: previews.with.map(seconds), without: previews.without.map(seconds) },
      },
    };
    writeResults("supply-chain", result);
  } finally {
    p.cleanup();
    await registry.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
