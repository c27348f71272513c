import * as pulumi from "@pulumi/pulumi";
import { endpointInputs, type DockerEndpoint } from "../docker/client";
import { toHostConfig, type HardeningProfile } from "../hardening";
import { releaseProvider } from "./provider";

/** Arguments of {@link AppRelease}. */
export interface AppReleaseArgs {
  /** Container names are `<namePrefix>-<6 random hex>`. */
  namePrefix: string;
  /** Pinned image to run (local image id or `<repo>@sha256:...`). */
  image: pulumi.Input<string>;
  /** `NAME=value` environment entries; secret as a whole when any value is. */
  env: pulumi.Input<string[]>;
  /** Container labels. */
  labels: Record<string, string>;
  /** The hardening profile, resources included. */
  profile: HardeningProfile;
  /** The named volume mounted at the profile's data path, shared by the releases of a stack. */
  dataVolume: pulumi.Input<string>;
  /** The network the release starts on (the stack's egress network); the route joins it to the proxy's. */
  network: pulumi.Input<string>;
  /** The engine to run on (`docker:host`, `docker:sshOpts`); the local one when unset. */
  docker?: DockerEndpoint;
}

/**
 * One release of the backend: a container built from the hardening profile, made anew (under a new
 * name) whenever anything about it changes, before the release it replaces is deleted (see
 * provider.ts for why this is not the Docker provider's `Container`). Its environment is kept
 * secret in state.
 */
export class AppRelease extends pulumi.dynamic.Resource {
  // `declare`, not class fields: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** The container's name: its host name on its networks. */
  declare public readonly name: pulumi.Output<string>;
  /** The container's full id. */
  declare public readonly containerId: pulumi.Output<string>;

  constructor(name: string, args: AppReleaseArgs, opts: pulumi.CustomResourceOptions = {}) {
    const { profile } = args;
    super(
      releaseProvider,
      name,
      {
        namePrefix: args.namePrefix,
        image: args.image,
        env: args.env,
        labels: args.labels,
        user: profile.user,
        stopSignal: profile.stopSignal,
        stopTimeoutSeconds: profile.stopTimeoutSeconds,
        hostConfig: pulumi.output(args.dataVolume).apply((volume) => toHostConfig(profile, volume)),
        network: args.network,
        ...endpointInputs(args.docker),
        name: undefined,
        containerId: undefined,
      },
      // The provider records its inputs; the environment holds the secrets, so it stays encrypted.
      { ...opts, additionalSecretOutputs: ["env"] },
    );
  }
}
