/**
 * The program: load and validate this stack's config, build its components, export its outputs.
 * Staging builds the image; prod takes only the digest staging proved ready. The entry is async so
 * the prod gate can decide before any prod resource is constructed. Its result is typed by the
 * stack-output contract (components/contract.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import { BackendImage } from "./components/backendImage";
import { BackendService } from "./components/backendService";
import { resolveBuildInfo } from "./components/buildInfo";
import { loadConfig, type BackendConfig } from "./components/config/load";
import type { ProdOutputs, StackOutputs } from "./components/contract";
import { GitHubDelivery } from "./components/delivery/github";
import { appEnvFor } from "./components/envMapping";
import { resolvePromotion } from "./components/promotion/gate";
import { PromotedImage } from "./components/promotedImage";
import { ReadinessCheck } from "./components/readiness/check";

/** Stack outputs as the program returns them: each value may still be on its way. */
type Exported<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** Container, and the readiness check against it, for an already pinned image. */
function deploy(config: BackendConfig, image: { image: pulumi.Input<string>; imageDigest: pulumi.Input<string> }) {
  const prefix = `${config.project}-${config.stack}`;
  const service = new BackendService(prefix, {
    image: image.image,
    appEnv: appEnvFor(config.environment),
    hostPort: config.service.hostPort,
    containerPort: config.service.containerPort,
    env: config.service.env,
    secrets: config.secrets,
    resources: config.service.resources,
    labels: { "backend-delivery.stack": config.stack, "backend-delivery.environment": config.environment },
  });
  const check = new ReadinessCheck(`${prefix}-readiness`, {
    url: config.readiness.url ?? service.url,
    containerName: service.containerName,
    containerId: service.containerId,
    imageDigest: image.imageDigest,
    path: config.readiness.path,
    timeoutSeconds: config.readiness.timeoutSeconds,
    intervalMs: config.readiness.intervalMs,
    successThreshold: config.readiness.successThreshold,
    timeoutHint: `raise readiness.timeoutSeconds: \`pulumi config set --stack ${config.stack} --path readiness.timeoutSeconds <seconds>\``,
    ...(config.dockerHost === undefined ? {} : { dockerHost: config.dockerHost }),
  });
  return { url: service.url, readiness: check.readiness };
}

async function main(): Promise<Exported<StackOutputs> | Exported<ProdOutputs>> {
  const config = loadConfig();

  if (config.environment === "staging") {
    const image = new BackendImage(`${config.project}-${config.stack}`, {
      context: config.image.context,
      dockerfile: config.image.dockerfile,
      name: config.image.name,
      baseImage: config.image.baseImage,
      platform: config.image.platform,
      ...resolveBuildInfo(config.image.context),
      registry:
        config.image.registry && config.registryPassword
          ? { ...config.image.registry, password: config.registryPassword }
          : undefined,
    });
    const { url, readiness } = deploy(config, { image: image.imageRef, imageDigest: image.imageDigest });
    return { environment: config.environment, imageRef: image.imageRef, imageDigest: image.imageDigest, url, readiness };
  }

  // Prod: the gate reads staging and throws before anything of prod is constructed.
  const approved = await resolvePromotion(`${config.project}-${config.stack}-promotion`, {
    fromStack: config.promotion.fromStack,
    maxAgeHours: config.promotion.maxAgeHours,
    registry: config.image.registry !== undefined,
    ...(config.promotion.override === undefined ? {} : { override: config.promotion.override }),
  });
  const registry = config.image.registry;
  const promoted = new PromotedImage(`${config.project}-${config.stack}`, {
    imageRef: approved.imageRef,
    ...(registry && config.registryPassword ? { registry: { ...registry, password: config.registryPassword } } : {}),
    ...(config.dockerHost === undefined ? {} : { dockerHost: config.dockerHost }),
  });
  const { url, readiness } = deploy(config, { image: promoted.image, imageDigest: approved.imageDigest });
  if (config.delivery !== undefined) {
    const { config: delivery, environmentSecrets, token } = config.delivery;
    new GitHubDelivery("github", {
      owner: delivery.repository.owner,
      repository: delivery.repository.name,
      defaultBranch: delivery.defaultBranch,
      productionReviewerUsers: delivery.productionReviewers.users,
      productionReviewerTeams: delivery.productionReviewers.teams,
      environmentSecrets,
      token,
    });
  }
  return {
    environment: config.environment,
    imageRef: approved.imageRef,
    imageDigest: approved.imageDigest,
    url,
    readiness,
    promotedFrom: { stack: approved.stack, imageDigest: approved.imageDigest, checkedAt: approved.checkedAt },
    // Absent, not undefined, on the first deploy: the engine warns about undefined stack outputs.
    ...(approved.previousImageRef === undefined ? {} : { previousImageRef: approved.previousImageRef }),
    ...(approved.override === undefined ? {} : { promotionOverride: approved.override }),
  };
}

export = main;
