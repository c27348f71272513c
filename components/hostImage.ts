import * as pulumi from "@pulumi/pulumi";
import { dockerClient, endpointInputs, pullImage, type DockerEndpoint } from "./docker/client";
import { redact } from "./redact";

/** A registry and the credentials this stack pulls with (its own `registryPassword`). */
export interface RegistryCredentials {
  /** Registry host, e.g. `ghcr.io`. */
  server: string;
  /** Registry user. */
  username: string;
  /** Registry password or token; a secret Output. */
  password: pulumi.Input<string>;
}

/** Arguments of {@link HostImage}. */
export interface HostImageArgs {
  /** A pinned reference: `<repo>@sha256:...` with a registry, else a local image id. */
  imageRef: pulumi.Input<string>;
  /** Registry to pull from; unset when the image was built on this stack's Docker host itself. */
  registry?: RegistryCredentials;
  /** The engine (`docker:host`, `docker:sshOpts`); the local one when unset. */
  docker?: DockerEndpoint;
}

/** Whether `ref` pins a registry image by digest: `<repo>@sha256:<64 hex>`. */
export function isRepoDigest(ref: string): boolean {
  return /^[^@\s]+@sha256:[0-9a-f]{64}$/.test(ref);
}

/** What the pull provider is given: the digest, where to pull it, and the credentials. */
export interface PulledImageInputs {
  imageRef: string;
  server: string;
  username: string;
  password: string;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What it records: its inputs and the pulled image's id. */
export interface PulledImageOutputs extends PulledImageInputs {
  imageId: string;
}

async function pull(inputs: PulledImageInputs): Promise<PulledImageOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  try {
    const imageId = await pullImage(docker, inputs.imageRef, { serveraddress: inputs.server, username: inputs.username, password: inputs.password });
    return { ...inputs, imageId };
  } catch (error) {
    // No `cause`: the engine's error is kept only as its message, with the password redacted.
    // eslint-disable-next-line preserve-caught-error
    throw new Error(`pulling ${inputs.imageRef} from ${inputs.server} as ${inputs.username} failed: ${redact((error as Error).message, [inputs.password])}`);
  }
}

/**
 * Pulls an image by digest onto a Docker host. A dynamic resource rather than the Docker provider's
 * `RemoteImage`, whose credentials live in a provider's `registryAuth`: a registry token that changes
 * on every CI run would show that provider as changed in every preview. Here only the digest and the
 * host are the resource: new credentials are used for the next pull, and are no change.
 */
export const pulledImageProvider: pulumi.dynamic.ResourceProvider<PulledImageInputs, PulledImageOutputs> = {
  async diff(_id, olds, news) {
    const replaces = (["imageRef", "dockerHost"] as const).filter((key) => (olds[key] ?? "") !== (news[key] ?? ""));
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },
  async create(inputs) {
    const outs = await pull(inputs);
    return { id: `${inputs.imageRef}@${inputs.dockerHost ?? "local"}`, outs };
  },
  async read(id, props) {
    if (props === undefined) return { id };
    try {
      const image = await dockerClient(props.dockerHost, props.dockerSshOpts).getImage(props.imageRef).inspect();
      return { id, props: { ...props, imageId: image.Id } };
    } catch (error) {
      // Gone from the host: refresh drops it, and the next update pulls it again.
      if ((error as { statusCode?: number }).statusCode === 404) return {};
      throw error;
    }
  },
  // Kept on the host: a release may still run it, and a rollback may need it again.
  async delete() {},
};

/** The pulled image; see {@link pulledImageProvider}. */
class PulledImage extends pulumi.dynamic.Resource {
  // `declare`, not a class field: a field would be re-initialised after `super()` (see readiness/check.ts).
  declare public readonly imageId: pulumi.Output<string>;
  constructor(name: string, args: { [K in keyof PulledImageInputs]: pulumi.Input<PulledImageInputs[K]> }, opts: pulumi.CustomResourceOptions) {
    // The password is an input (the pull needs it) and so is kept in state: encrypted, as a secret.
    super(pulledImageProvider, name, { ...args, imageId: undefined }, { ...opts, additionalSecretOutputs: ["password"] });
  }
}

/**
 * Puts a pinned image on this stack's Docker host without building anything: the image staging just
 * pushed, the one the promotion gate approved, or the one a rollback returns to. With a registry it is
 * pulled by its digest (so the bytes are the ones that were built and proven, whatever tags did
 * since) and kept when the stack is destroyed; without one the image already is on the host under
 * its id, and nothing is registered, so destroying prod can never delete the image staging still runs.
 */
export class HostImage extends pulumi.ComponentResource {
  /** What the container runs: the pulled image's id with a registry, else the local image id. */
  public readonly image: pulumi.Output<string>;

  constructor(name: string, args: HostImageArgs, opts: pulumi.ComponentResourceOptions = {}) {
    // Earlier releases named this component PromotedImage; the alias keeps existing stacks' resources.
    super("backend-delivery:index:HostImage", name, {}, { ...opts, aliases: [...(opts.aliases ?? []), { type: "backend-delivery:index:PromotedImage" }] });
    const registry = args.registry;
    if (registry === undefined) {
      this.image = pulumi.output(args.imageRef);
    } else {
      const refused = (ref: string) => new Error(`HostImage ${name}: with a registry, imageRef must be pinned as <repo>@sha256:<digest>, not ${JSON.stringify(ref)}`);
      if (typeof args.imageRef === "string" && !isRepoDigest(args.imageRef)) throw refused(args.imageRef);
      const pulled = new PulledImage(
        `${name}-image`,
        {
          imageRef: pulumi.output(args.imageRef).apply((ref) => {
            if (!isRepoDigest(ref)) throw refused(ref);
            return ref;
          }),
          server: registry.server,
          username: registry.username,
          password: pulumi.secret(registry.password),
          ...endpointInputs(args.docker),
        },
        { parent: this },
      );
      this.image = pulled.imageId;
    }
    this.registerOutputs({ image: this.image });
  }
}
