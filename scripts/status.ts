/**
 * What runs where: `npm run status -- <stack> [--json]`.
 *
 * One screen from the stack's outputs (never a secret: `pulumi stack output` without
 * --show-secrets), its Docker host (`docker:host` from the stack's config: the release that serves
 * and since when, Swarm replicas, the images the stack keeps there; for a Swarm stack what each node
 * kept, from the state's record of image retention, `pulumi stack export`) and the record of its last
 * drift check (the stack tag `npm run drift` writes). `--json` prints the same for scripts.
 *
 * Exit codes: 0 shown; 1 shown in part: a `pulumi` command or the Docker host failed (its part says
 * why); 2 bad command line; 3 refused (no backend, no such stack).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { dockerClient } from "../components/docker/client";
import { stackImageRepository } from "../components/release/images";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { DRIFT_TAG, readDriftRecord } from "./lib/drift";
import { pulumiFailure, projectDir, stackExists, type PulumiCli } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";
import { renderStatus, stackStatus, swarmRetentionRecord, type HostView, type NodeImagesRecord } from "./lib/status";

const USAGE = "Usage: npm run status -- <stack> [--json]   e.g. npm run status -- prod";

function parseCommandLine(argv: string[]): { stack: string; json: boolean } {
  try {
    const { values, positionals } = parseArgs({ args: argv[0] === "--" ? argv.slice(1) : argv, options: { json: { type: "boolean", default: false } }, allowPositionals: true, strict: true });
    if (positionals.length !== 1 || !/^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/.test(positionals[0] ?? "")) throw new CliError(`Name exactly one stack.\n${USAGE}`, ExitCode.usage);
    return { stack: positionals[0] as string, json: values.json };
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) throw new CliError(`${(e as Error).message}\n${USAGE}`, ExitCode.usage);
    throw e;
  }
}

/** A plain config value of the stack (`docker:host`), or undefined when unset. */
async function plainConfig(cli: PulumiCli, stack: string, key: string): Promise<string | undefined> {
  const res = await cli.capture(["config", "get", key, "--stack", stack, "--non-interactive"]);
  return res.code === 0 ? res.stdout.trim() || undefined : undefined;
}

/** What the stack's Docker host reports about it. */
async function hostView(host: string | undefined, sshOpts: string[], project: string, stack: string): Promise<HostView> {
  try {
    const docker = dockerClient(host, sshOpts);
    const component = `${project}-${stack}`;
    const containers = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [`backend-delivery.component=${component}`, "backend-delivery.role=release"] }) });
    const releases = await Promise.all(
      containers.map(async (c) => {
        const info = await docker.getContainer(c.Id).inspect();
        return { name: info.Name.replace(/^\//, ""), state: info.State.Status, startedAt: info.State.StartedAt, image: info.Image };
      }),
    );
    releases.sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt));
    const listed = await docker.listImages({ filters: JSON.stringify({ reference: [`${stackImageRepository(project, stack)}:*`] }) });
    const keptImages = listed.map((i) => ({ id: i.Id, created: new Date(i.Created * 1000).toISOString() })).sort((a, b) => b.created.localeCompare(a.created));
    // A Swarm stack runs one service labelled like its release containers.
    const services = await docker.listServices({ filters: JSON.stringify({ label: [`backend-delivery.component=${component}`] }) }).catch(() => []);
    let replicas: { running: number; desired: number } | undefined;
    if (services.length > 0) {
      const service = services[0]!;
      const tasks = await docker.listTasks({ filters: JSON.stringify({ service: [service.ID ?? ""], "desired-state": ["running"] }) });
      replicas = { running: tasks.filter((t) => t.Status?.State === "running").length, desired: service.Spec?.Mode?.Replicated?.Replicas ?? tasks.length };
    }
    return { reachable: true, releases, keptImages, ...(replicas === undefined ? {} : { replicas }) };
  } catch (error) {
    return { reachable: false, error: (error as Error).message.split("\n")[0] ?? String(error) };
  }
}

async function main(): Promise<number> {
  const args = parseCommandLine(process.argv.slice(2));
  const dir = projectDir();
  const session = await openSession(dir, process.env, false);
  const { cli } = session;
  for (const line of describeSession(session, dir)) process.stderr.write(`${line}\n`);
  if (!(await stackExists(cli, args.stack))) throw new CliError(`Stack ${args.stack} does not exist in this backend.`, ExitCode.refused);

  const res = await cli.capture(["stack", "output", "--json", "--stack", args.stack, "--non-interactive"]);
  if (res.code !== 0) throw pulumiFailure(`pulumi stack output --stack ${args.stack}`, res);
  const outputs = JSON.parse(res.stdout || "{}") as Record<string, unknown>;
  const project = String((parseYaml(fs.readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as { name?: unknown }).name ?? "");
  const host = await plainConfig(cli, args.stack, "docker:host");
  const sshOpts = JSON.parse((await plainConfig(cli, args.stack, "docker:sshOpts")) ?? "[]") as string[];
  const view = await hostView(host, sshOpts, project, args.stack);
  const tag = await cli.capture(["stack", "tag", "get", DRIFT_TAG, "--stack", args.stack, "--non-interactive"]);
  const drift = tag.code === 0 ? readDriftRecord(tag.stdout.trim()) : undefined;

  // A Swarm stack's nodes are not reachable from here: what its image retention recorded in the state says what each keeps.
  let nodeImages: NodeImagesRecord[] | undefined;
  if (view.reachable && view.replicas !== undefined) {
    const exported = await cli.capture(["stack", "export", "--stack", args.stack, "--non-interactive"]);
    nodeImages = exported.code === 0 ? swarmRetentionRecord(JSON.parse(exported.stdout || "{}") as unknown, project, args.stack) : undefined;
  }
  const now = new Date();
  const status = stackStatus(args.stack, outputs, view, drift, now, nodeImages);
  process.stdout.write(args.json ? `${JSON.stringify(status, null, 2)}\n` : `${renderStatus(status, now).join("\n")}\n`);
  return view.reachable ? ExitCode.ok : ExitCode.pulumiFailed;
}

runMain(main);
