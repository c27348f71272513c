/**
 * The dynamic provider of a release container: one container per release, created and started
 * before the release it replaces is stopped and deleted.
 *
 * Why not the Docker provider's `Container`: with this provider a replaced container is always
 * deleted before its replacement is created (it asks the engine for delete-before-replace, with a
 * fixed name or an automatic one alike), which is a gap in service on every release. A dynamic
 * resource is replaced the other way round, and Pulumi deletes the old one at the end of the update,
 * after everything that depends on the new one; when the update fails before that, the old one is
 * kept and keeps serving.
 *
 * Pulumi serializes this provider into its own process: plain functions and `require`d packages only.
 */
import type Docker from "dockerode";
import type * as pulumi from "@pulumi/pulumi";
import { canonicalJson } from "../canonicalJson";
import { dockerClient } from "../docker/client";
import type { EngineHostConfig } from "../hardening";

/** Everything the container is made of, resolved; any change is a new release. */
export interface ReleaseInputs {
  /** Container names are `<namePrefix>-<6 random hex>`: new for every release, derived from no value. */
  namePrefix: string;
  /** What to run: a local image id or `<repo>@sha256:...`. */
  image: string;
  /** `NAME=value` entries; secret as a whole. */
  env: string[];
  labels: Record<string, string>;
  user: string;
  stopSignal: string;
  stopTimeoutSeconds: number;
  hostConfig: EngineHostConfig;
  /** The network the release starts on, where it is proven ready; the route joins it to the proxy's (proxy/route.ts). */
  network: string;
  /** Docker host of the engine (`docker:host`); the local one when unset. */
  dockerHost?: string;
  /** `docker:sshOpts` for an `ssh://` host: how to connect, so no reason to replace the release. */
  dockerSshOpts?: string[];
}

/** What the provider records: its inputs, and the container it made. */
export interface ReleaseOutputs extends ReleaseInputs {
  /** The container's name, e.g. `backend-delivery-staging-app-3f9a1c`. */
  name: string;
  /** The container's full id; its first 12 characters are its host name, which `/version` reports. */
  containerId: string;
}

/** Whether Docker answered "no such container". */
function isMissing(error: unknown): boolean {
  return (error as { statusCode?: number }).statusCode === 404;
}

/**
 * The inputs whose change makes a different container (what the provider recorded besides them does
 * not count); none means the same release.
 */
function changedInputs(olds: ReleaseInputs, news: ReleaseInputs): string[] {
  const keys = ["namePrefix", "image", "env", "labels", "user", "stopSignal", "stopTimeoutSeconds", "hostConfig", "network", "dockerHost"] as const;
  // Canonical JSON: object keys sorted at every depth, so the order config was written in is no change.
  return keys.filter((key) => canonicalJson(olds[key] ?? null) !== canonicalJson(news[key] ?? null));
}

/**
 * Stops a release: SIGTERM, then up to its stop timeout (the one it was created with) while it
 * answers what it was sent and exits. One already stopped or gone is no error. The route stops the
 * release that served this way once it has switched; deleting it does the same before it removes it.
 */
export async function stopRelease(docker: Docker, id: string): Promise<void> {
  await docker
    .getContainer(id)
    .stop()
    .catch((error: unknown) => {
      const status = (error as { statusCode?: number }).statusCode;
      if (status !== 304 && status !== 404) throw error;
    });
}

/** Creates and starts the container; a container that cannot start is removed again. */
async function createRelease(inputs: ReleaseInputs): Promise<ReleaseOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  // The Web Crypto global, not node:crypto: a module import would be copied into the serialized provider.
  const name = `${inputs.namePrefix}-${Buffer.from(crypto.getRandomValues(new Uint8Array(3))).toString("hex")}`;
  const container = await docker.createContainer({
    name,
    Image: inputs.image,
    Env: inputs.env,
    User: inputs.user,
    Labels: inputs.labels,
    StopSignal: inputs.stopSignal,
    StopTimeout: inputs.stopTimeoutSeconds,
    HostConfig: { ...inputs.hostConfig, NetworkMode: inputs.network },
    NetworkingConfig: { EndpointsConfig: { [inputs.network]: {} } },
  });
  try {
    await container.start();
  } catch (error) {
    await container.remove({ force: true }).catch(() => undefined);
    throw new Error(`the release container ${name} did not start: ${(error as Error).message}`, { cause: error });
  }
  return { ...inputs, name, containerId: container.id };
}

/** The provider; see the module comment. */
export const releaseProvider: pulumi.dynamic.ResourceProvider<ReleaseInputs, ReleaseOutputs> = {
  async diff(_id, olds, news) {
    // The changed inputs are named, so a preview says why the release is replaced.
    const changed = changedInputs(olds, news);
    return { changes: changed.length > 0, replaces: changed, deleteBeforeReplace: false };
  },
  async create(inputs) {
    const outs = await createRelease(inputs);
    return { id: outs.containerId, outs };
  },
  async read(id, props) {
    try {
      await dockerClient(props?.dockerHost, props?.dockerSshOpts).getContainer(id).inspect();
      return { id, props };
    } catch (error) {
      // Gone: refresh drops it from state, and the next update starts a new release.
      if (isMissing(error)) return {};
      throw error;
    }
  },
  async delete(id, props) {
    const docker = dockerClient(props.dockerHost, props.dockerSshOpts);
    await stopRelease(docker, id);
    await docker.getContainer(id).remove({ force: true }).catch((error: unknown) => {
      if (!isMissing(error)) throw error;
    });
  },
};
