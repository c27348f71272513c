/**
 * `ReadinessCheck`: a Pulumi dynamic resource that proves a release ready before the proxy sends it
 * traffic, and records the `readiness` stack output (see DESIGN.md). The logic is the plain
 * {@link probeReadiness} function; this file only adapts it to Pulumi's resource lifecycle. The
 * probe asks its questions through the Docker API, from inside the release, at the release's address
 * on its egress network: nothing assumes the service is reachable from the machine running `pulumi`.
 *
 * Pulumi serializes the provider object below together with everything it references and runs it
 * in its dynamic-provider process
 * (https://www.pulumi.com/docs/iac/concepts/resources/dynamic-providers/). Hence the provider only
 * reaches plain functions and `require`d packages; the contract's zod schema, which cannot be
 * serialized, validates the record back in the program.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { Readiness } from "../contract";
import { dockerContainerView, execProber } from "./dockerView";
import { probeReadiness } from "./probe";

/** Inputs of a readiness check. */
export interface ReadinessCheckArgs {
  /** The release's container name: its host name on its networks. */
  containerName: pulumi.Input<string>;
  /** The release's container id; a new container means a new check. */
  containerId: pulumi.Input<string>;
  /** The port the backend listens on inside the container. */
  port: pulumi.Input<number>;
  /** Digest of the image the container runs (sha256:...); recorded as is. */
  imageDigest: pulumi.Input<string>;
  /** Readiness path, e.g. /readyz. */
  path: pulumi.Input<string>;
  /** How long to wait for the service to become ready. */
  timeoutSeconds: pulumi.Input<number>;
  /** Pause between two probes. */
  intervalMs: pulumi.Input<number>;
  /** Consecutive HTTP 200 answers required. */
  successThreshold: pulumi.Input<number>;
  /** The `Host` the probe names: one the backend accepts. */
  hostHeader: pulumi.Input<string>;
  /** Docker engine of the container (unix://, tcp://, ssh://); default `DOCKER_HOST`, then the local socket. */
  dockerHost?: pulumi.Input<string>;
  /** `docker:sshOpts` for an `ssh://` host; how to connect, not what is checked. */
  dockerSshOpts?: pulumi.Input<string[]>;
  /** How to give the check more time, told by whoever set `timeoutSeconds`; shown when it times out. */
  timeoutHint?: pulumi.Input<string>;
}

/** The inputs as the provider sees them: resolved. */
export type ReadinessCheckInputs = { [K in keyof ReadinessCheckArgs]: pulumi.Unwrap<ReadinessCheckArgs[K]> };

/** What the provider stores: its inputs (for the next diff) and the record. */
export interface ReadinessCheckOutputs extends ReadinessCheckInputs {
  readiness: Readiness;
}

/** A change to any of these probes a different thing: the old record no longer applies. */
export const REPLACE_ON = ["imageDigest", "containerId", "containerName", "port", "path"] as const;
/** A change to these only re-runs the probe. */
export const UPDATE_ON = ["timeoutSeconds", "intervalMs", "successThreshold", "hostHeader", "dockerHost", "timeoutHint"] as const;

/** How a change of inputs affects the recorded check. */
export function diffReadinessInputs(olds: Partial<ReadinessCheckInputs>, news: Partial<ReadinessCheckInputs>): pulumi.dynamic.DiffResult {
  const replaces = REPLACE_ON.filter((key) => olds[key] !== news[key]);
  const updates = UPDATE_ON.filter((key) => olds[key] !== news[key]);
  return { changes: replaces.length + updates.length > 0, replaces: [...replaces] };
}

/** The record, validated with the contract schema; an error naming the check and each problem otherwise. */
export function checkedRecord(checkName: string, record: unknown): Readiness {
  const parsed = Readiness.safeParse(record);
  if (!parsed.success) {
    throw new Error(`Readiness check ${checkName} recorded a readiness output that breaks the contract:\n${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

async function runCheck(inputs: ReadinessCheckInputs): Promise<ReadinessCheckOutputs> {
  const readiness = await probeReadiness(
    {
      url: `http://${inputs.containerName}:${inputs.port}`,
      path: inputs.path,
      imageDigest: inputs.imageDigest,
      timeoutSeconds: Number(inputs.timeoutSeconds),
      intervalMs: Number(inputs.intervalMs),
      successThreshold: Number(inputs.successThreshold),
      ...(inputs.timeoutHint === undefined ? {} : { timeoutHint: inputs.timeoutHint }),
    },
    dockerContainerView(inputs.containerId, { host: inputs.dockerHost, sshOpts: inputs.dockerSshOpts }),
    execProber(inputs.containerId, { host: inputs.dockerHost, sshOpts: inputs.dockerSshOpts }, inputs.hostHeader),
  );
  return { ...inputs, readiness };
}

/** The dynamic provider: create and update probe; delete has nothing to remove. */
export const readinessProvider: pulumi.dynamic.ResourceProvider<ReadinessCheckInputs, ReadinessCheckOutputs> = {
  async diff(_id, olds, news) {
    return diffReadinessInputs(olds, news);
  },
  async create(inputs) {
    const outs = await runCheck(inputs);
    return { id: `${inputs.containerName}@${inputs.containerId.slice(0, 12)}`, outs };
  },
  async update(_id, _olds, news) {
    return { outs: await runCheck(news) };
  },
};

/**
 * Probes a release until it is ready, failing fast when its container dies, and records the
 * `readiness` output. Runs again whenever the image digest or the container changes.
 */
export class ReadinessCheck extends pulumi.dynamic.Resource {
  // `declare`, not a class field: a field would be re-initialised after `super()` and wipe the
  // output Pulumi registers there (useDefineForClassFields is on for ES2022 targets).
  /** What the check observed; validated with the contract's `Readiness` schema. */
  declare public readonly readiness: pulumi.Output<Readiness>;

  constructor(name: string, args: ReadinessCheckArgs, opts?: pulumi.CustomResourceOptions) {
    super(readinessProvider, name, { ...args, readiness: undefined }, opts);
    // The provider cannot carry the zod schema, so the record is checked where it is consumed;
    // an invalid record stops the update instead of reaching the stack outputs.
    this.readiness = this.readiness.apply((record) => (record === undefined ? record : checkedRecord(name, record)));
  }
}
