/**
 * The program: load and validate this stack's config, build its components, export its outputs.
 * Staging builds the image; prod takes only the digest staging proved ready. The entry is async so
 * the prod gate can decide before any prod resource is constructed. Its result is typed by the
 * stack-output contract (components/contract.ts).
 */
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { BackendImage, digestOf } from "./components/backendImage";
import { BackendService, proxyContainerName, type BackendServiceArgs, type ImageRetention, type ServiceTls } from "./components/backendService";
import { resolveBuildInfo } from "./components/buildInfo";
import { loadConfig, type BackendConfig } from "./components/config/load";
import { terminatesTls, type ProdOutputs, type Readiness, type StackOutputs, type TlsRecord } from "./components/contract";
import { GitHubDelivery } from "./components/delivery/github";
import { checkEngine, checkRegistryLogin, checkRegistryPull, plainValue, readHostRetention, type RegistryLogin } from "./components/docker/preflight";
import { appEnvFor } from "./components/envMapping";
import { HostImage, isRepoDigest, type RegistryCredentials } from "./components/hostImage";
import type { ProdCertificate } from "./components/promotion/decide";
import { resolvePromotion } from "./components/promotion/gate";
import { UNSIGNED_WITHOUT_REGISTRY } from "./components/promotion/signature";
import { observeServedCertificate, type Observation } from "./components/proxy/observe";
import { formatTlsStatus, tlsStatusOf } from "./components/proxy/tlsStatus";
import { keptRollback, nextPreviousImageRef, planRollback, readReleaseHistory, type ReleaseHistory } from "./components/release/history";
import { logPlannedRemovals, logSwarmPlannedRemovals, plannedRemovals } from "./components/release/retention";
import { publicKeyFingerprint } from "./components/supplyChain/keys";
import { ImageSignature } from "./components/supplyChain/signature";
import { verifyImage } from "./components/supplyChain/verify";
import { observeSwarmServedCertificate } from "./components/swarm/observe";
import { checkSwarmManager } from "./components/swarm/preflight";
import { probeConfinement } from "./components/swarm/probe";
import { SwarmService, swarmNames } from "./components/swarm/swarmService";

/** Stack outputs as the program returns them: each value may still be on its way. */
type Exported<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** The name of the stack's service component; its proxy and releases are named after it. */
const serviceName = (config: BackendConfig): string => `${config.project}-${config.stack}`;

/**
 * How TLS ends for this stack (`proxy.*`), with what its proxy serves right now (seen through the
 * proxy), logged as the `tls status` line the pull-request comment reads, and for prod's gate the
 * certificate it will serve.
 */
async function stackTls(config: BackendConfig): Promise<{ service: ServiceTls; certificate?: ProdCertificate }> {
  const { proxy, tlsPrivateKey } = config;
  const { mode, acme, certificate } = proxy.tls;
  const observed = terminatesTls(mode) && proxy.domain !== undefined ? await observeProxy(config, proxy.domain) : undefined;
  const status = tlsStatusOf(mode, proxy.domain, observed, certificate);
  pulumi.log.info(formatTlsStatus(status));
  const held = mode === "certificate" ? { notAfter: status.configured?.notAfter, source: "configured" as const } : { notAfter: status.served?.notAfter, source: "served" as const };
  return {
    service: {
      mode,
      ...(proxy.domain === undefined ? {} : { domain: proxy.domain }),
      httpsPort: proxy.httpsPort,
      ...(mode === "acme" ? { acme } : {}),
      ...(mode === "certificate" && certificate !== undefined ? { certificate, ...(tlsPrivateKey === undefined ? {} : { privateKey: tlsPrivateKey }) } : {}),
      ...(observed === undefined ? {} : { observed }),
    },
    ...((mode !== "acme" && mode !== "certificate") || held.notAfter === undefined
      ? {}
      : { certificate: { notAfter: held.notAfter, source: held.source, stack: config.stack, proxyContainer: proxyContainerName(serviceName(config)) } }),
  };
}

/**
 * What the stack's proxy serves for `domain`, seen through it from inside the stack's network: from
 * a running release on one host, from a probe container on a Swarm stack's overlay network (its
 * tasks need not run on the manager). The one other place besides {@link deploy} that tells the
 * targets apart.
 */
function observeProxy(config: BackendConfig, domain: string): Promise<Observation> {
  const name = serviceName(config);
  const look = { endpoint: config.docker, proxyContainer: proxyContainerName(name), domain };
  if (config.service.swarm === undefined) return observeServedCertificate({ ...look, component: name });
  return observeSwarmServedCertificate({ ...look, ...swarmNames(name), ...probeConfinement(), labels: { ...stackLabels(config), "backend-delivery.role": "probe" } });
}

/** The labels of everything the stack runs. */
function stackLabels(config: BackendConfig): Record<string, string> {
  return { "backend-delivery.stack": config.stack, "backend-delivery.environment": config.environment };
}

/**
 * What the stack's Docker host keeps of its images once this update's release serves: the image it
 * runs (`next`), the rollback target and the `release.keepImages` newest. Read at the start, so the
 * preview shows what will go.
 */
async function retention(config: BackendConfig, history: ReleaseHistory, next: pulumi.Input<string>, previous: pulumi.Input<string | undefined>): Promise<ImageRetention> {
  const keepImages = config.release.keepImages;
  const host = await readHostRetention(config.docker, config.project, config.stack, [history.imageRef, history.previousImageRef, typeof next === "string" ? next : undefined]);
  const where = config.docker.host ?? "the local Docker engine";
  // Under Swarm the same rules hold on every node that ran the service's tasks; the manager is the one the program sees.
  const log = config.service.swarm === undefined ? logPlannedRemovals : logSwarmPlannedRemovals;
  if (typeof next === "string") {
    log(config.stack, where, plannedRemovals(host, next, typeof previous === "string" ? previous : undefined, keepImages), keepImages);
  } else {
    // The image is not built yet: what goes if it is a new one (a rerun or a rotation removes less).
    log(config.stack, where, plannedRemovals(host, "", history.imageRef, keepImages), keepImages, "(if it builds a new image)");
  }
  return {
    project: config.project,
    repository: host.repository,
    keepImages,
    previous,
    planned: pulumi.all([next, previous]).apply(([ref, prev]) => plannedRemovals(host, ref, prev ?? undefined, keepImages)),
  };
}

/** A pinned image: on the stack's Docker host (`image`), as referenced (`imageRef`), and its digest. */
interface PinnedImage {
  image: pulumi.Input<string>;
  imageRef: pulumi.Input<string>;
  imageDigest: pulumi.Input<string>;
}

/** What every target reports: where it answers, what its readiness check saw, what it serves over TLS. */
interface Deployed {
  url: pulumi.Output<string>;
  readiness: pulumi.Output<Readiness>;
  tls: pulumi.Output<TlsRecord>;
}

/**
 * The stack's service for an already pinned image, on the target `service.orchestrator` picks: the
 * one place that chooses. Both targets take the same resolved inputs and report the same outputs.
 */
function deploy(config: BackendConfig, image: PinnedImage, tls: ServiceTls, retained?: ImageRetention): Deployed {
  const args = serviceArgs(config, image, tls, retained);
  const name = serviceName(config);
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
function serviceArgs(config: BackendConfig, image: PinnedImage, tls: ServiceTls, retained?: ImageRetention): BackendServiceArgs {
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
    tls,
    readiness: {
      ...config.readiness,
      timeoutHint: `raise readiness.timeoutSeconds: \`pulumi config set --stack ${config.stack} --path readiness.timeoutSeconds <seconds>\``,
    },
    labels: stackLabels(config),
    docker: config.docker,
    ...(retained === undefined ? {} : { retention: retained }),
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

/**
 * Prod's check of staging's image in the registry, with `promotion.signing.publicKey`; undefined
 * without a registry (nothing to verify) or without the key (config refuses that; the gate fails closed).
 */
function gateSigning(config: BackendConfig, login: RegistryLogin | undefined) {
  const publicKey = config.promotion.signing?.publicKey;
  if (login === undefined || publicKey === undefined) return undefined;
  return {
    publicKeyFingerprint: publicKeyFingerprint(publicKey),
    verify: async (imageRef: string) => {
      // The digest must still be in the registry, for prod's credentials, before its signature means anything.
      await checkRegistryPull(config.docker, imageRef, login, config.stack);
      return verifyImage({ imageRef, login, docker: config.docker }, publicKey);
    },
  };
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
  const proxyTls = await stackTls(config);

  if (config.rollbackTo !== undefined) {
    // Back to the last different image, through the same release path; no build, no gate: it ran here before.
    const plan = planRollback(history, config.rollbackTo, new Date());
    if (!plan.ok) throw new pulumi.RunError(`rollback of stack ${config.stack} refused: ${plan.problem}`);
    if (login !== undefined && isRepoDigest(plan.target)) await checkRegistryPull(config.docker, plan.target, login, config.stack);
    if (!isRepoDigest(plan.target)) {
      // Without a registry the image exists only on this host: removed there, it cannot come back.
      const host = await readHostRetention(config.docker, config.project, config.stack, [plan.target]);
      if (!host.hostIds.has(plan.target)) {
        throw new pulumi.RunError(
          `rollback of stack ${config.stack} refused: its rollback target ${plan.target} is no longer on the Docker host ` +
            `(removed by hand, or by \`docker image prune\`), and without a registry nothing can bring it back; nothing was changed. ` +
            `Roll forward instead: fix the release and run \`pulumi up --stack ${config.stack}\`${config.environment === "prod" ? " after staging has proven the fix" : ""}.`,
        );
      }
    }
    const imageDigest = digestOf(plan.target);
    const retained = await retention(config, history, plan.target, plan.record.fromImageRef);
    const { url, readiness, tls } = deploy(config, { image: hostImage(config, plan.target).image, imageRef: plan.target, imageDigest }, proxyTls.service, retained);
    githubDelivery(config);
    return {
      environment: config.environment,
      imageRef: plan.target,
      imageDigest,
      url,
      readiness,
      tls,
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
      project: config.project,
      registry,
    }, builder === undefined ? {} : { providers: { docker: builder } });
    const onHost = registry === undefined ? image.imageRef : hostImage(config, image.imageRef).image;
    const previous = image.imageRef.apply((ref) => nextPreviousImageRef(history, ref));
    const retained = await retention(config, history, image.imageRef, previous);
    const { url, readiness, tls } = deploy(config, { image: onHost, imageRef: image.imageRef, imageDigest: image.imageDigest }, proxyTls.service, retained);
    // After the push, beside the deploy (only in `pulumi up`: a dynamic resource does nothing in a preview).
    const signature =
      registry === undefined || config.signingKey === undefined
        ? undefined
        : new ImageSignature(`${config.project}-${config.stack}`, { imageRef: image.imageRef, registry, key: config.signingKey });
    return {
      environment: config.environment,
      imageRef: image.imageRef,
      imageDigest: image.imageDigest,
      url,
      readiness,
      tls,
      supplyChain: signature?.record ?? { status: "unsigned", reason: UNSIGNED_WITHOUT_REGISTRY },
      // The new image is known only once built: null, not undefined, where there is no other one yet.
      ...(history.imageRef === undefined ? {} : { previousImageRef: previous.apply((ref) => ref ?? null) }),
      ...(history.rollback === undefined ? {} : { rollback: image.imageRef.apply((ref) => keptRollback(history, ref)) }),
    };
  }

  // Prod: the gate reads staging, verifies its image in the registry, and throws before anything of prod is constructed.
  const signing = gateSigning(config, login);
  const approved = await resolvePromotion(`${config.project}-${config.stack}-promotion`, {
    fromStack: config.promotion.fromStack,
    maxAgeHours: config.promotion.maxAgeHours,
    registry: config.image.registry !== undefined,
    history,
    ...(config.promotion.override === undefined ? {} : { override: config.promotion.override }),
    ...(proxyTls.certificate === undefined ? {} : { certificate: proxyTls.certificate }),
    minCertificateDays: config.promotion.minCertificateDays,
    ...(signing === undefined ? {} : { signing }),
  });
  // With signing, the gate asked the registry already; without a key (refused by config) it is asked here.
  if (login !== undefined && signing === undefined) await checkRegistryPull(config.docker, approved.imageRef, login, config.stack);
  const retained = await retention(config, history, approved.imageRef, approved.previousImageRef);
  const { url, readiness, tls } = deploy(config, { image: hostImage(config, approved.imageRef).image, imageRef: approved.imageRef, imageDigest: approved.imageDigest }, proxyTls.service, retained);
  githubDelivery(config);
  const rollback = keptRollback(history, approved.imageRef);
  return {
    environment: config.environment,
    imageRef: approved.imageRef,
    imageDigest: approved.imageDigest,
    url,
    readiness,
    tls,
    promotedFrom: { stack: approved.stack, imageDigest: approved.imageDigest, checkedAt: approved.checkedAt },
    supplyChain: approved.supplyChain,
    // Absent, not undefined, on the first deploy: the engine warns about undefined stack outputs.
    ...(approved.previousImageRef === undefined ? {} : { previousImageRef: approved.previousImageRef }),
    ...(rollback === undefined ? {} : { rollback }),
    ...(approved.override === undefined ? {} : { promotionOverride: approved.override }),
  };
}

export = main;
