/**
 * Checks the program makes before it registers any resource, so a stack that cannot work is refused
 * with its fix while nothing has changed yet, in a preview as in an update: the Docker host answers
 * (over SSH: the pinned host key, the key, the docker group), and the registry takes this stack's
 * credentials and still holds the digest it is about to run. Also the one read of the host's images
 * that image retention plans with (release/retention.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import { formatRefusal, type Problem } from "../problems";
import { redact } from "../redact";
import { PROJECT_LABEL, stackImageRepository } from "../release/images";
import type { HostRetention } from "../release/retention";
import { dockerClient, type DockerEndpoint } from "./client";
import { sshTarget } from "./ssh";

/** A registry with a plain password, for one check at the program's start. */
export interface RegistryLogin {
  server: string;
  username: string;
  password: string;
}

/** The engine's message of a failed Docker API call, without the credentials it was given. */
function engineMessage(error: unknown, secrets: readonly string[]): string {
  const e = error as { json?: { message?: unknown }; message?: unknown };
  const raw = typeof e.json?.message === "string" ? e.json.message : String(e.message ?? error);
  return redact(raw.trim().replace(/\s+/g, " "), secrets).slice(0, 500);
}

/** The plain value of a secret Output known at the program's start (stack config is). */
export function plainValue(output: pulumi.Input<string>): Promise<string> {
  return new Promise((resolve) => void pulumi.output(output).apply((value) => resolve(value)));
}

/**
 * The Docker engine at `endpoint` answers: for an `ssh://` host the one place where a host key that
 * is not pinned, a refused key or a user outside the docker group is explained. Other hosts are left
 * to the Docker provider.
 */
export async function checkEngine(endpoint: DockerEndpoint, stack: string): Promise<void> {
  if (sshTarget(endpoint.host) === undefined) return;
  try {
    await dockerClient(endpoint.host, endpoint.sshOpts).ping();
  } catch (error) {
    const problem: Problem = {
      path: ["docker:host"],
      message: engineMessage(error, []),
      fix: `fix the server or the connection settings (docker:host, docker:sshOpts) of stack ${stack}, then run pulumi up again`,
    };
    throw new pulumi.RunError(formatRefusal(`stack ${stack} cannot reach its Docker engine`, "problem", "nothing was changed", [problem]));
  }
}

const SET_PASSWORD = (stack: string) => `pulumi config set --stack ${stack} --secret registryPassword   (prompts; or pipe the token on stdin)`;

/** Whether the engine's message says the registry refused the credentials. */
function refusedLogin(message: string): boolean {
  return /unauthorized|authentication required|denied|401|403|incorrect username or password/i.test(message);
}

/**
 * The registry takes `login` (on the engine that builds and pushes): a wrong password is refused
 * before the image is built, naming the registry and the key to fix.
 */
export async function checkRegistryLogin(endpoint: DockerEndpoint, login: RegistryLogin, stack: string): Promise<void> {
  try {
    await dockerClient(endpoint.host, endpoint.sshOpts).checkAuth({ username: login.username, password: login.password, serveraddress: login.server });
  } catch (error) {
    const message = engineMessage(error, [login.password]);
    const problem: Problem = refusedLogin(message)
      ? { path: ["registryPassword"], message: `registry ${login.server} refused user ${login.username} with this password: ${message}`, fix: SET_PASSWORD(stack) }
      : { path: ["image", "registry", "server"], message: `registry ${login.server} could not be reached: ${message}`, fix: `check image.registry.server of stack ${stack} and that the registry is up` };
    throw new pulumi.RunError(formatRefusal(`stack ${stack} was not deployed`, "problem", "nothing was built or changed", [problem]));
  }
}

/**
 * The engine at `endpoint` can pull `imageRef` from the registry with `login`: the credentials are
 * taken and the digest is still there. Asks the registry for the manifest only (nothing is pulled).
 */
export async function checkRegistryPull(endpoint: DockerEndpoint, imageRef: string, login: RegistryLogin, stack: string): Promise<void> {
  try {
    await dockerClient(endpoint.host, endpoint.sshOpts)
      .getImage(imageRef)
      .distribution({ authconfig: { username: login.username, password: login.password, serveraddress: login.server } });
  } catch (error) {
    const message = engineMessage(error, [login.password]);
    const missing = /manifest unknown|not found|no such|does not exist|404/i.test(message);
    const problem: Problem = missing
      ? {
          path: ["imageRef"],
          message: `${imageRef} is not in registry ${login.server} any more (deleted or garbage-collected): ${message}`,
          fix: "deploy staging again, so that it pushes and proves a new image, then run pulumi up on this stack",
        }
      : refusedLogin(message)
        ? { path: ["registryPassword"], message: `registry ${login.server} refused user ${login.username} with this password: ${message}`, fix: SET_PASSWORD(stack) }
        : { path: ["image", "registry", "server"], message: `registry ${login.server} could not be asked for ${imageRef}: ${message}`, fix: `check image.registry.server of stack ${stack} and that the registry is up` };
    throw new pulumi.RunError(formatRefusal(`stack ${stack} was not deployed`, "problem", "nothing of it changed", [problem]));
  }
}

/** Reads the stack's images on the host at `endpoint`, and resolves `refs` (image ids or repo digests) to host ids. */
export async function readHostRetention(endpoint: DockerEndpoint, project: string, stack: string, refs: readonly (string | undefined)[]): Promise<HostRetention> {
  const docker = dockerClient(endpoint.host, endpoint.sshOpts);
  const repository = stackImageRepository(project, stack);
  const listed = await docker.listImages({ filters: JSON.stringify({ reference: [`${repository}:*`] }) });
  const images = listed
    .filter((image) => image.Labels?.[PROJECT_LABEL] === project)
    .map((image) => ({ id: image.Id, created: new Date(image.Created * 1000).toISOString() }));
  const hostIds = new Map<string, string>();
  for (const ref of refs) {
    if (ref === undefined || hostIds.has(ref)) continue;
    const id = await docker
      .getImage(ref)
      .inspect()
      .then((image) => image.Id)
      .catch(() => undefined);
    if (id !== undefined) hostIds.set(ref, id);
  }
  return { repository, images, hostIds };
}
