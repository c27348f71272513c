/**
 * The program: load and validate this stack's config, build its components, export its outputs.
 * Staging builds the image; prod takes only the digest staging proved ready. The entry is async so
 * the prod gate can decide before any prod resource is constructed. Its result is typed by the
 * stack-output contract (components/contract.ts).
 */
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { BackendImage, digestOf } from "./components/backendImage";
import { BackendService, type BackendServiceArgs } from "./components/backendService";
import { resolveBuildInfo } from "./components/buildInfo";
import { loadConfig, type BackendConfig } from "./components/config/load";
import type { ProdOutputs, Readiness, StackOutputs } from "./components/contract";
import { GitHubDelivery } from "./components/delivery/github";
import { checkEngine, checkRegistryLogin, checkRegistryPull, plainValue, type RegistryLogin } from "./components/docker/preflight";
import { appEnvFor } from "./components/envMapping";
import { HostImage, isRepoDigest, type RegistryCredentials } from "./components/hostImage";
import { resolvePromotion } from "./components/promotion/gate";
import { keptRollback, nextPreviousImageRef, planRollback, readReleaseHistory } from "./components/release/history";
import { checkSwarmManager } from "./components/swarm/preflight";
import { SwarmService } from "./components/swarm/swarmService";

/** Stack outputs as the program returns them: each value may still be on its way. */
type Exported<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** A pinned image: on the stack's Docker host (`image`), as referenced (`imageRef`), and its digest. */
interface PinnedImage {
  image: pulumi.Input<string>;
  imageRef: pulumi.Input<string>;
  imageDigest: pulumi.Input<string>;
}

/**
 * The stack's service for an already pinned image, on the target `service.orchestrator` picks: the
 * one place that chooses. Both targets take the same resolved inputs and report the same outputs.
 */
function deploy(config: BackendConfig, image: PinnedImage): { url: pulumi.Output<string>; readiness: pulumi.Output<Readiness> } {
  const args = serviceArgs(config, image);
  const name = `${config.project}-${config.stack}`;
  if (config.service.swarm === undefined) return new BackendService(name, args);
  const registry = registryOf(config);
  // Every node pulls the image by its reference; the manager's copy (`image`) serves the probe.
  return new SwarmService(name, {
    ...args,
    serviceImage: image.imageRef,
    swarm: config.service.swarm,
    secretTags: config.secretTags,
    ...(registry === undefined ? {} : { registryAuth: registry }),
  });
}

/** What every target is given: the stack's resolved settings for this image. */
function serviceArgs(config: BackendConfig, image: PinnedImage): BackendServiceArgs {
  return {
    image: image.image,
    imageDigest: image.imageDigest,
    appEnv: appEnvFor(config.environment),
    hostPort: config.service.hostPort,
    containerPort: config.service.containerPort,
    env: config.service.env,
    secrets: config.secrets,
    resources: config.service.resources,
    proxyImage: config.proxy.image,
    readiness: {
      ...config.readiness,
      timeoutHint: `raise readiness.timeoutSeconds: \`pulumi config set --stack ${config.stack} --path readiness.timeoutSeconds <seconds>\``,
    },
    labels: { "backend-delivery.stack": config.stack, "backend-delivery.environment": config.environment },
    docker: config.docker,
  };
}

/** This stack's registry and its credentials (`image.registry`, `registryPassword`), when it uses one. */
function registryOf(config: BackendConfig): RegistryCredentials | undefined {
  const registry = config.image.registry;
  return registry && config.registryPassword ? { ...registry, password: config.registryPassword } : undefined;
}

/** A pinned image on this stack's Docker host: pulled by digest from the registry, or the local image id. */
function hostImage(config: BackendConfig, imageRef: pulumi.Input<string>): HostImage {
  const registry = registryOf(config);
  return new HostImage(`${config.project}-${config.stack}`, { imageRef, ...(registry === undefined ? {} : { registry }), docker: config.docker });
}

/** The registry login for the checks at the program's start (the password stays out of everything else). */
async function registryLogin(config: BackendConfig): Promise<RegistryLogin | undefined> {
  const registry = registryOf(config);
  return registry === undefined ? undefined : { server: registry.server, username: registry.username, password: await plainValue(registry.password) };
}

/** The GitHub side of delivery, when the (prod) stack manages it: on every update, so it is never deleted. */
function githubDelivery(config: BackendConfig): GitHubDelivery | undefined {
  if (config.delivery === undefined) return undefined;
  const { config: delivery, environmentSecrets, token } = config.delivery;
  return new GitHubDelivery("github", {
    owner: delivery.repository.owner,
    repository: delivery.repository.name,
    defaultBranch: delivery.defaultBranch,
    productionReviewerUsers: delivery.productionReviewers.users,
    productionReviewerTeams: delivery.productionReviewers.teams,
    environmentSecrets,
    token,
  });
}

async function main(): Promise<Exported<StackOutputs> | Exported<ProdOutputs>> {
  const config = loadConfig();
  // Before anything is registered: a server that cannot be reached, or a registry that refuses, is
  // reported with its fix while nothing has changed.
  await checkEngine(config.docker, config.stack);
  if (config.service.orchestrator === "swarm") await checkSwarmManager(config.docker, config.stack, config.image.registry !== undefined);
  const login = await registryLogin(config);
  const history = await readReleaseHistory((message) => void pulumi.log.warn(message));

  if (config.rollbackTo !== undefined) {
    // Back to the last different image, through the same release path; no build, no gate: it ran here before.
    const plan = planRollback(history, config.rollbackTo, new Date());
    if (!plan.ok) throw new pulumi.RunError(`rollback of stack ${config.stack} refused: ${plan.problem}`);
    if (login !== undefined && isRepoDigest(plan.target)) await checkRegistryPull(config.docker, plan.target, login, config.stack);
    const imageDigest = digestOf(plan.target);
    const { url, readiness } = deploy(config, { image: hostImage(config, plan.target).image, imageRef: plan.target, imageDigest });
    githubDelivery(config);
    return {
      environment: config.environment,
      imageRef: plan.target,
      imageDigest,
      url,
      readiness,
      previousImageRef: plan.record.fromImageRef,
      rollback: plan.record,
    };
  }

  if (config.environment === "staging") {
    // With a registry the image is built and pushed by the engine where pulumi runs (the CI runner),
    // and the stack's Docker host pulls it by digest, as prod will: the server needs no build context,
    // no build cache and no push rights. Without one it can only be built on the Docker host itself.
    const registry = registryOf(config);
    if (login !== undefined) await checkRegistryLogin({}, login, config.stack);
    const builder = registry === undefined ? undefined : new docker.Provider(`${config.project}-${config.stack}-builder`, {});
    const image = new BackendImage(`${config.project}-${config.stack}`, {
      context: config.image.context,
      dockerfile: config.image.dockerfile,
      name: config.image.name,
      baseImage: config.image.baseImage,
      platform: config.image.platform,
      ...resolveBuildInfo(config.image.context),
      registry,
    }, builder === undefined ? {} : { providers: { docker: builder } });
    const onHost = registry === undefined ? image.imageRef : hostImage(config, image.imageRef).image;
    const { url, readiness } = deploy(config, { image: onHost, imageRef: image.imageRef, imageDigest: image.imageDigest });
    return {
      environment: config.environment,
      imageRef: image.imageRef,
      imageDigest: image.imageDigest,
      url,
      readiness,
      // The new image is known only once built: null, not undefined, where there is no other one yet.
      ...(history.imageRef === undefined ? {} : { previousImageRef: image.imageRef.apply((ref) => nextPreviousImageRef(history, ref) ?? null) }),
      ...(history.rollback === undefined ? {} : { rollback: image.imageRef.apply((ref) => keptRollback(history, ref)) }),
    };
  }

  // Prod: the gate reads staging and throws before anything of prod is constructed.
  const approved = await resolvePromotion(`${config.project}-${config.stack}-promotion`, {
    fromStack: config.promotion.fromStack,
    maxAgeHours: config.promotion.maxAgeHours,
    registry: config.image.registry !== undefined,
    history,
    ...(config.promotion.override === undefined ? {} : { override: config.promotion.override }),
  });
  if (login !== undefined) await checkRegistryPull(config.docker, approved.imageRef, login, config.stack);
  const { url, readiness } = deploy(config, { image: hostImage(config, approved.imageRef).image, imageRef: approved.imageRef, imageDigest: approved.imageDigest });
  githubDelivery(config);
  const rollback = keptRollback(history, approved.imageRef);
  return {
    environment: config.environment,
    imageRef: approved.imageRef,
    imageDigest: approved.imageDigest,
    url,
    readiness,
    promotedFrom: { stack: approved.stack, imageDigest: approved.imageDigest, checkedAt: approved.checkedAt },
    // Absent, not undefined, on the first deploy: the engine warns about undefined stack outputs.
    ...(approved.previousImageRef === undefined ? {} : { previousImageRef: approved.previousImageRef }),
    ...(rollback === undefined ? {} : { rollback }),
    ...(approved.override === undefined ? {} : { promotionOverride: approved.override }),
  };
}

export = main;
