/**
 * Delivery through a registry, the local socket against `ssh://`: real `pulumi up` wall times of a
 * first staging deploy, a staging update with a new digest (build, push, pull on the server, new
 * release proven and switched), a first prod deploy (promotion: pull by digest) and the promotion of
 * a new digest, once with the stacks' Docker host on this machine's socket and once through a
 * throwaway `sshd` (host key pinned), both pushing to a throwaway registry with authentication and
 * TLS. Image layers are cached before anything is timed. Writes bench-results/remote.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, buildImage, dockerHostAddress, removeImages, requireDockerEngine, uniqueName } from "../../support/docker";
import { REPO, requirePulumiCli, scratchProject } from "../../support/engine";
import { startPostgres, type PostgresCluster } from "../../support/postgres";
import { LOCAL_REGISTRY_IMAGE, startRegistry, type Registry } from "../../support/registry";
import { makeCosignKeys } from "../../support/signingKeys";
import { LOCAL_SSHD_IMAGE, startSshd, type Sshd } from "../../support/sshd";
import { freePort } from "../../support/wait";
import { seconds, writeResults } from "./results";


interface Timings {
  firstStagingDeploySeconds: number;
  stagingUpdateWithNewDigestSeconds: number;
  firstProdDeploySeconds: number;
  prodPromotionOfNewDigestSeconds: number;
}

/**
 * One round of the four updates, with the stacks' Docker host `server` (undefined: the local socket)
 * and `extraSshOpts` after the server's own.
 */
async function round(registry: Registry, pg: PostgresCluster, server: Sshd | undefined, extraSshOpts: string[] = []): Promise<Timings> {
  const p = scratchProject();
  const address = await dockerHostAddress();
  const repository = `${p.project}/backend`;
  const host = server === undefined ? {} : { "docker:host": server.dockerHost, "docker:sshOpts": [...server.sshOpts, ...extraSshOpts] };
  try {
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const registrySettings = { name: repository, registry: { server: registry.server, username: registry.username } };
    const keys = await makeCosignKeys();
    p.writeStackFile("staging", {
      environment: "staging",
      service: { hostPort: await freePort() },
      image: { baseImage: LOCAL_PYTHON_BASE, ...registrySettings },
      proxy: { image: LOCAL_PROXY_IMAGE },
      ...host,
    });
    p.writeStackFile("prod", {
      environment: "prod",
      service: { hostPort: await freePort() },
      image: registrySettings,
      // TLS ends in front (a prod stack must choose): the proxy serves plain HTTP, as before.
      proxy: { image: LOCAL_PROXY_IMAGE, tls: { mode: "upstream" } },
      promotion: { fromStack: `organization/${p.project}/staging`, signing: { publicKey: keys.publicKey } },
      ...host,
    });
    const staging = await p.stack("staging");
    const prod = await p.stack("prod");
    for (const stack of ["staging", "prod"]) {
      await p.setSecret(stack, "secrets.DATABASE_URL", `postgresql://${pg.user}:${pg.password}@${address}:${pg.port}/${pg.database}`);
      await p.setSecret(stack, "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
      await p.setSecret(stack, "registryPassword", registry.password);
    }
    // Signed since images are: staging signs what it pushes, prod's gate verifies it.
    await p.setSecret("staging", "cosignPrivateKey", keys.privateKey);
    await p.setSecret("staging", "cosignPassword", keys.password);
    const timed = async (what: () => Promise<unknown>): Promise<number> => {
      const started = Date.now();
      await what();
      return Date.now() - started;
    };
    const firstStaging = await timed(() => staging.up());
    const firstProd = await timed(() => prod.up());
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), "# a new release\n");
    const newDigest = await timed(() => staging.up());
    const promotion = await timed(() => prod.up());
    await prod.destroy();
    await staging.destroy();
    return {
      firstStagingDeploySeconds: seconds(firstStaging),
      stagingUpdateWithNewDigestSeconds: seconds(newDigest),
      firstProdDeploySeconds: seconds(firstProd),
      prodPromotionOfNewDigestSeconds: seconds(promotion),
    };
  } finally {
    p.cleanup();
    await removeImages(`${registry.server}/${repository}`);
  }
}

async function bench(): Promise<void> {
  const pulumiVersion = await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_SSHD_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  const warmTag = `${uniqueName("bench-remote-warm")}:latest`;
  await buildImage({ context: path.join(REPO, "backend"), tag: warmTag, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } });
  await removeImages(warmTag);
  const address = await dockerHostAddress();
  const [registry, sshd, pg] = await Promise.all([startRegistry({ address }), startSshd(), startPostgres({ alsoListenOn: address })]);
  try {
    const local = await round(registry, pg, undefined);
    const ssh = await round(registry, pg, sshd);
    // OpenSSH's connection sharing, as the README suggests it: one TCP connection and handshake per
    // minute instead of one per engine call, for the provider's ssh and the program's alike.
    const controlDir = fs.mkdtempSync("/tmp/ssh-cm-");
    const shared = await round(registry, pg, sshd, ["-o", "ControlMaster=auto", "-o", `ControlPath=${controlDir}/%C`, "-o", "ControlPersist=60"]).finally(() =>
      fs.rmSync(controlDir, { recursive: true, force: true }),
    );
    const ratio = (over: Timings) => Object.fromEntries(Object.keys(local).map((k) => [k, Math.round((over[k as keyof Timings] / local[k as keyof Timings]) * 100) / 100]));
    const result = {
      benchmark: "pulumi up through a registry: Docker host on the local socket against ssh:// (a loopback sshd on this machine), without and with ssh connection sharing",
      pulumi: pulumiVersion,
      node: process.version,
      localSocket: local,
      ssh,
      sshWithConnectionSharing: shared,
      sshOverLocal: ratio(ssh),
      sshWithConnectionSharingOverLocal: ratio(shared),
    };
    writeResults("remote", result);
  } finally {
    await Promise.all([registry.stop(), sshd.stop(), pg.stop()]);
  }
}

bench().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
