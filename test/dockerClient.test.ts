/**
 * The program's own Docker connection over SSH: the arguments it gives the system's ssh, what it makes
 * of each way a connection fails, and the agent itself, driven by stand-in `ssh` commands on PATH
 * (the real sshd runs in test/deliveryInfra.docker.test.ts and the end-to-end suite).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerClient, endpointInputs } from "../components/docker/client";
import { explainSshFailure, sshDialArgs, sshTarget } from "../components/docker/ssh";

describe("sshTarget and sshDialArgs", () => {
  it("reads user, host and port, and leaves other schemes alone", () => {
    expect(sshTarget("ssh://deploy@server.example.com:2222")).toEqual({ user: "deploy", host: "server.example.com", port: "2222" });
    expect(sshTarget("ssh://server.example.com")).toEqual({ host: "server.example.com" });
    expect(sshTarget("ssh://deploy@[2001:db8::5]:22")).toEqual({ user: "deploy", host: "2001:db8::5", port: "22" });
    expect(sshTarget("unix:///var/run/docker.sock")).toBeUndefined();
    expect(sshTarget(undefined)).toBeUndefined();
  });

  it("pins host key checking and batch mode ahead of the stack's own flags, which ssh cannot let override them", () => {
    const args = sshDialArgs({ user: "deploy", host: "server", port: "2222" }, ["-o", "StrictHostKeyChecking=no", "-i", "/keys/deploy"]);
    expect(args).toEqual([
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=no",
      "-i",
      "/keys/deploy",
      "-o",
      "ConnectTimeout=15",
      "-T",
      "-l",
      "deploy",
      "-p",
      "2222",
      "--",
      "server",
      "docker",
      "system",
      "dial-stdio",
    ]);
    // ssh takes the first value of an option: the pinned one.
    expect(args.indexOf("StrictHostKeyChecking=yes")).toBeLessThan(args.indexOf("StrictHostKeyChecking=no"));
    expect(sshDialArgs({ host: "server" })).toEqual(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-T", "--", "server", "docker", "system", "dial-stdio"]);
  });

  it("records only what is set, so an unset endpoint is no diff", () => {
    expect(endpointInputs(undefined)).toEqual({});
    expect(endpointInputs({})).toEqual({});
    expect(endpointInputs({ host: "ssh://deploy@server", sshOpts: [] })).toEqual({ dockerHost: "ssh://deploy@server" });
    expect(endpointInputs({ host: "ssh://deploy@server", sshOpts: ["-i", "k"] })).toEqual({ dockerHost: "ssh://deploy@server", dockerSshOpts: ["-i", "k"] });
  });
});

describe("explainSshFailure", () => {
  const host = "ssh://deploy@127.0.0.1:2222";
  const cases: [string, string, RegExp[]][] = [
    [
      "unknown host key",
      "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n",
      [/host key is not pinned in known_hosts, so the connection was refused/, /ssh-keyscan -p 2222 127\.0\.0\.1/, /UserKnownHostsFile/],
    ],
    [
      "changed host key",
      "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nHost key verification failed.\n",
      [/does not match the one pinned in known_hosts/, /nothing was sent/, /fingerprint/],
    ],
    ["refused key", "deploy@127.0.0.1: Permission denied (publickey).\r\n", [/refused the SSH key of deploy/, /authorized_keys/, /-i <key file>/]],
    ["no sshd", "ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n", [/no SSH connection to 127\.0\.0\.1 port 2222/, /sshd runs there/]],
    [
      "not in the docker group",
      "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/_ping\": dial unix /var/run/docker.sock: connect: permission denied\n",
      [/deploy may not use Docker on the server/, /usermod -aG docker deploy/],
    ],
    ["no docker", "bash: line 1: docker: command not found\n", [/has no docker command for deploy/, /install Docker Engine/]],
    ["anything else", "kex_exchange_identification: read: Connection reset by peer\n", [/no SSH connection/]],
    ["silence", "", [/ended \(exit 255\) before the engine answered\. ssh said: nothing/]],
  ];
  it.each(cases)("%s: names the problem and the fix", (_name, stderr, expected) => {
    const message = explainSshFailure(host, stderr, 255);
    expect(message.startsWith(`Docker host ${host}: `)).toBe(true);
    for (const pattern of expected) expect(message).toMatch(pattern);
    // The banner of at-signs is noise, not news.
    expect(message).not.toMatch(/@@@/);
  });
});

describe("the SSH agent, with stand-in ssh commands", () => {
  let bin: string;
  const originalPath = process.env.PATH;
  beforeAll(() => {
    bin = fs.mkdtempSync(path.join(os.tmpdir(), "fake-ssh-"));
    process.env.PATH = `${bin}${path.delimiter}${originalPath ?? ""}`;
  });
  afterAll(() => {
    process.env.PATH = originalPath;
    fs.rmSync(bin, { recursive: true, force: true });
  });
  /** An `ssh` that records its arguments, writes `stderr`, then answers `stdout` or nothing, and exits `code`. */
  function fakeSsh(options: { stderr?: string; stdout?: string; code: number }): string {
    const argsFile = path.join(bin, "args");
    const script = [
      "#!/bin/sh",
      `printf '%s\\n' "$@" > '${argsFile}'`,
      options.stderr === undefined ? "" : `printf '%s' '${options.stderr}' >&2`,
      // An HTTP request arrives on stdin; answer it as the engine would, then hang up.
      options.stdout === undefined ? "" : `head -c 1 > /dev/null; printf '${options.stdout}'`,
      `exit ${options.code}`,
    ].join("\n");
    fs.writeFileSync(path.join(bin, "ssh"), `${script}\n`, { mode: 0o755 });
    return argsFile;
  }

  it("turns a refused host key into the explanation, and passes the pinned options and the stack's flags", async () => {
    const argsFile = fakeSsh({ stderr: "Host key verification failed.", code: 255 });
    const error = await dockerClient("ssh://deploy@127.0.0.1:2222", ["-i", "/keys/deploy"]).ping().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^Docker host ssh:\/\/deploy@127\.0\.0\.1:2222: the server's host key is not pinned in known_hosts/);
    const args = fs.readFileSync(argsFile, "utf8").trim().split("\n");
    expect(args.slice(0, 6)).toEqual(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-i", "/keys/deploy"]);
    expect(args.slice(-8)).toEqual(["-l", "deploy", "-p", "2222", "--", "127.0.0.1", "docker", "system", "dial-stdio"].slice(-8));
  });

  it("reads the engine's answer through the pipe", async () => {
    fakeSsh({ stdout: "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nOK", code: 0 });
    const answer = await dockerClient("ssh://deploy@127.0.0.1:2222").ping();
    expect(String(answer)).toBe("OK");
  });

  it("says when there is no ssh to run", async () => {
    fs.rmSync(path.join(bin, "ssh"), { force: true });
    const saved = process.env.PATH;
    process.env.PATH = bin;
    try {
      await expect(dockerClient("ssh://deploy@127.0.0.1").ping()).rejects.toThrow(/^Docker host ssh:\/\/deploy@127\.0\.0\.1: could not run ssh: spawn ssh ENOENT/);
    } finally {
      process.env.PATH = saved;
    }
  });
});
