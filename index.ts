/**
 * The program: load and validate this stack's config, build its components, export its outputs.
 * Staging builds the image; prod takes only the digest staging proved ready. The entry is async so
 * the prod gate can decide before any prod resource is constructed.
 */
import * as pulumi from "@pulumi/pulumi";
import { BackendImage } from "./components/backendImage";
import { BackendService } from "./components/backendService";
import { resolveBuildInfo } from "./components/buildInfo";
import { loadConfig, type BackendConfig } from "./components/config";
import { appEnvFor } from "./components/envMapping";
import { githubDeliveryFromConfig } from "./components/githubDelivery";
import { resolvePromotion } from "./components/promotionGate";
import { PromotedImage } from "./components/promotedImage";
import { ReadinessCheck } from "./components/readinessCheck";

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
    ...(config.dockerHost === undefined ? {} : { dockerHost: config.dockerHost }),
  });
  return { url: service.url, readiness: check.readiness };
}

async function main(): Promise<Record<string, unknown>> {
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
    override: config.promotion.override,
  });
  const registry = config.image.registry;
  const promoted = new PromotedImage(`${config.project}-${config.stack}`, {
    imageRef: approved.imageRef,
    ...(registry && config.registryPassword ? { registry: { ...registry, password: config.registryPassword } } : {}),
    ...(config.dockerHost === undefined ? {} : { dockerHost: config.dockerHost }),
  });
  const { url, readiness } = deploy(config, { image: promoted.image, imageDigest: approved.imageDigest });
  githubDeliveryFromConfig(config.delivery, config.environment);
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
