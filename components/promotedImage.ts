import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/** Arguments of {@link PromotedImage}. */
export interface PromotedImageArgs {
  /** The reference the promotion gate approved: `<repo>@sha256:...` with a registry, else the local image id. */
  imageRef: string;
  /** Registry to pull from, with its credentials; unset when staging and prod share one Docker host. */
  registry?: {
    /** Registry host, e.g. `ghcr.io`. */
    server: string;
    /** Registry user. */
    username: string;
    /** Registry password or token; a secret Output. */
    password: pulumi.Input<string>;
  };
  /** The Docker host (`docker:host`); the provider's default when unset. */
  dockerHost?: string;
}

/**
 * Puts the approved image on prod's Docker host without building anything. With a registry the image
 * is pulled by its digest (so the bytes are the ones staging ran, whatever tags did since) and kept
 * when the stack is destroyed; without one the image already is on the shared host under its id, and
 * nothing is registered, so destroying prod can never delete the image staging still runs.
 */
export class PromotedImage extends pulumi.ComponentResource {
  /** What the container runs: the pulled image's id with a registry, else the approved local image id. */
  public readonly image: pulumi.Output<string>;

  constructor(name: string, args: PromotedImageArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:PromotedImage", name, {}, opts);
    const registry = args.registry;
    if (registry === undefined) {
      this.image = pulumi.output(args.imageRef);
    } else {
      if (!/@sha256:[0-9a-f]{64}$/.test(args.imageRef)) {
        throw new Error(`PromotedImage ${name}: with a registry, imageRef must be pinned as <repo>@sha256:<digest>`);
      }
      // An explicit provider only to carry the pull credentials; it talks to the same host as the
      // default provider that runs the container.
      const provider = new docker.Provider(
        `${name}-registry`,
        {
          ...(args.dockerHost === undefined ? {} : { host: args.dockerHost }),
          registryAuth: [{ address: registry.server, username: registry.username, password: registry.password }],
        },
        { parent: this },
      );
      const pulled = new docker.RemoteImage(
        `${name}-image`,
        { name: args.imageRef, keepLocally: true },
        { parent: this, provider },
      );
      this.image = pulled.imageId;
    }
    this.registerOutputs({ image: this.image });
  }
}
