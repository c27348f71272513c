import * as path from "node:path";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/** Where to push the image; the password is a secret Output. */
export interface BackendImageRegistry {
  server: pulumi.Input<string>;
  username: pulumi.Input<string>;
  password: pulumi.Input<string>;
}

/** Arguments of {@link BackendImage}. */
export interface BackendImageArgs {
  /** Build context directory, relative to the project directory. */
  context: string;
  /** Dockerfile path relative to the build context. */
  dockerfile: string;
  /** Repository name of the image, without the registry server. */
  name: string;
  /** Base image passed as the `PYTHON_BASE` build argument; the Dockerfile's default when unset. */
  baseImage?: string;
  /** Target platform such as `linux/amd64`; the engine's own when unset. */
  platform?: string;
  /** Version baked in as `APP_VERSION`. */
  appVersion: pulumi.Input<string>;
  /** Revision baked in as `GIT_SHA`. */
  gitSha: pulumi.Input<string>;
  /** The delivering project, baked in as the label image retention looks for (`DELIVERY_PROJECT`). */
  project?: string;
  /** Push here and reference the image by repo digest; the image stays local when unset. */
  registry?: BackendImageRegistry;
}

/** The digest part of a repo digest (`repo@sha256:...`) or a local image id (`sha256:...`). */
export function digestOf(repoDigest: string): string {
  const at = repoDigest.lastIndexOf("@");
  return at === -1 ? repoDigest : repoDigest.slice(at + 1);
}

/**
 * The backend's Docker image, built once from `backend/`. `imageRef` is what a container should run:
 * the repo digest when pushed, else the local image id; both pin the exact bytes.
 */
export class BackendImage extends pulumi.ComponentResource {
  /** Pinned reference: `<server>/<name>@sha256:...` with a registry, else the local image id. */
  public readonly imageRef: pulumi.Output<string>;
  /** `sha256:<64 hex>`. */
  public readonly imageDigest: pulumi.Output<string>;
  /** The tag-style name the image was built as. */
  public readonly imageName: pulumi.Output<string>;

  constructor(name: string, args: BackendImageArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:BackendImage", name, {}, opts);

    const registry = args.registry;
    const imageName = registry ? pulumi.interpolate`${registry.server}/${args.name}` : pulumi.output(args.name);
    // Only build-time metadata goes in here: build args are readable in the image history.
    const buildArgs: Record<string, pulumi.Input<string>> = {
      APP_VERSION: args.appVersion,
      GIT_SHA: args.gitSha,
      ...(args.project === undefined ? {} : { DELIVERY_PROJECT: args.project }),
      ...(args.baseImage === undefined ? {} : { PYTHON_BASE: args.baseImage }),
    };

    const image = new docker.Image(
      `${name}-image`,
      {
        imageName,
        build: {
          context: args.context,
          // The provider resolves the Dockerfile against the working directory, not the context.
          dockerfile: path.join(args.context, args.dockerfile),
          args: buildArgs,
          platform: args.platform,
          // A pushed image is the best cache on a fresh CI runner; locally the engine's cache serves.
          cacheFrom: registry ? { images: [imageName] } : undefined,
        },
        skipPush: registry === undefined,
        registry: registry
          ? { server: registry.server, username: registry.username, password: pulumi.secret(registry.password) }
          : undefined,
      },
      { parent: this },
    );

    this.imageName = image.imageName;
    this.imageRef = image.repoDigest;
    this.imageDigest = image.repoDigest.apply(digestOf);
    this.registerOutputs({ imageRef: this.imageRef, imageDigest: this.imageDigest, imageName: this.imageName });
  }
}
