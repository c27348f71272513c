/**
 * A throwaway PostgreSQL cluster for integration tests: its own data directory under the system
 * temp dir, listening on 127.0.0.1 only, with an app role whose password is random per cluster.
 *
 * PostgreSQL refuses to run as root, so when the tests run as root the server and the admin
 * client run as the `postgres` system user (via `runuser`), which Debian's package creates.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./wait";

/** Where PostgreSQL's server binaries live: `PG_BIN`, else the newest `/usr/lib/postgresql/<n>/bin`. */
export function postgresBinDir(): string {
  if (process.env.PG_BIN !== undefined) return process.env.PG_BIN;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error(
      "PostgreSQL server binaries not found under /usr/lib/postgresql. " +
        "Install them (Debian: apt-get install postgresql) or set PG_BIN to the directory holding initdb.",
    );
  }
  return join(root, versions[0], "bin");
}

/** Result of running a PostgreSQL tool. */
interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

const runsAsRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** The command line that runs `binary` as the cluster's owner. */
function asOwner(binary: string, args: readonly string[]): [string, string[]] {
  return runsAsRoot ? ["runuser", ["-u", "postgres", "--", binary, ...args]] : [binary, [...args]];
}

function runTool(binary: string, args: readonly string[], input?: string): Promise<ToolResult> {
  const [command, argv] = asOwner(binary, args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"], cwd: tmpdir() });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

async function mustRun(binary: string, args: readonly string[], what: string): Promise<string> {
  const result = await runTool(binary, args);
  if (result.code !== 0) {
    throw new Error(`${what} failed (exit ${result.code}): ${(result.stderr || result.stdout).trim().slice(-1500)}`);
  }
  return result.stdout;
}

/**
 * An open `psql` session that keeps its transaction state between statements, e.g. to hold a
 * lock while the code under test waits for it.
 */
export interface PsqlSession {
  /** Runs SQL in the session and resolves with its unaligned output once it completed. */
  query(sql: string): Promise<string>;
  /** Ends the session (an open transaction is rolled back by the server). */
  close(): Promise<void>;
}

/** A running throwaway cluster. */
export interface PostgresCluster {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** Database owned by {@link user}. */
  readonly database: string;
  /** Login role of the app (not a superuser). */
  readonly user: string;
  /** Random per cluster; pass it to the code under test only through its environment. */
  readonly password: string;
  /** `<scheme>://user:password@127.0.0.1:port/database`; scheme defaults to `postgresql`. */
  url(scheme?: string): string;
  /** Runs SQL as the superuser in the app's database; returns unaligned, tuples-only output. */
  adminQuery(sql: string): Promise<string>;
  /** Opens a long-lived superuser session in the app's database. */
  openSession(): Promise<PsqlSession>;
  /** Stops the server (fast shutdown) and deletes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@link startPostgres}. */
export interface StartPostgresOptions {
  /** Port on 127.0.0.1; a free one unless told. */
  port?: number;
  /** Names of the app's database and role; `app` unless told. */
  database?: string;
  user?: string;
  /**
   * Also listen on this host address (the Docker bridge's gateway, say), accepting password logins
   * from the subnets the host is directly connected to, so that containers can reach the cluster.
   */
  alsoListenOn?: string;
}

/** Creates, starts and seeds a throwaway cluster. Call `stop()` when done (e.g. in `afterAll`). */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const port = options.port ?? (await freePort());
  const database = options.database ?? "app";
  const user = options.user ?? "app";
  const password = randomBytes(18).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "pg-test-"));
  const dataDir = join(dir, "data");
  const socketDir = dir;
  if (runsAsRoot) {
    const account = (flag: string): number => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, account("-u"), account("-g"));
  }
  chmodSync(dir, 0o700);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (existsSync(join(dataDir, "postmaster.pid"))) {
      await runTool(join(bin, "pg_ctl"), ["-D", dataDir, "-m", "fast", "-w", "-t", "30", "stop"]);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    // Local (socket) connections are trusted for the admin client; TCP needs the password.
    await mustRun(
      join(bin, "initdb"),
      ["-D", dataDir, "-U", "postgres", "-E", "UTF8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
      "initdb",
    );
    if (options.alsoListenOn !== undefined) {
      appendFileSync(join(dataDir, "pg_hba.conf"), "host all all samenet scram-sha-256\n");
    }
    const serverOptions = [
      `-c listen_addresses=${["127.0.0.1", ...(options.alsoListenOn === undefined ? [] : [options.alsoListenOn])].join(",")}`,
      `-c port=${port}`,
      `-c unix_socket_directories=${socketDir}`,
      // Durability is worthless for a cluster that is deleted after the test; speed is not.
      "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
    ].join(" ");
    await mustRun(
      join(bin, "pg_ctl"),
      ["-D", dataDir, "-l", join(dir, "server.log"), "-o", serverOptions, "-w", "-t", "30", "start"],
      "pg_ctl start",
    );
  } catch (error) {
    const log = join(dir, "server.log");
    const tail = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").slice(-10).join("\n") : "";
    await stop();
    throw tail === "" ? error : new Error(`${(error as Error).message}\nserver log:\n${tail}`);
  }

  const psqlArgs = (db: string): string[] => ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port), "-U", "postgres", "-d", db];
  const query = async (db: string, sql: string): Promise<string> => {
    const result = await runTool(join(bin, "psql"), psqlArgs(db), sql);
    if (result.code !== 0) throw new Error(`psql failed (exit ${result.code}): ${result.stderr.trim()}`);
    return result.stdout.trim();
  };

  try {
    // The password is sent on stdin, so it never shows in a process list.
    await query("postgres", `CREATE ROLE "${user}" LOGIN PASSWORD '${password}';\nCREATE DATABASE "${database}" OWNER "${user}";\n`);
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    host: "127.0.0.1",
    port,
    database,
    user,
    password,
    url: (scheme = "postgresql") => `${scheme}://${user}:${password}@127.0.0.1:${port}/${database}`,
    adminQuery: (sql) => query(database, sql),
    openSession: () => openSession(join(bin, "psql"), psqlArgs(database)),
    stop,
  };
}

async function openSession(psql: string, args: string[]): Promise<PsqlSession> {
  const [command, argv] = asOwner(psql, args);
  const child: ChildProcessWithoutNullStreams = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"], cwd: tmpdir() });
  let buffer = "";
  let errors = "";
  let exited = false;
  child.stdout.on("data", (chunk: Buffer) => (buffer += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString("utf8")));
  const closed = new Promise<void>((resolve) =>
    child.on("close", () => {
      exited = true;
      resolve();
    }),
  );
  let counter = 0;

  const session: PsqlSession = {
    // Each statement batch is followed by a unique marker; its echo means the batch completed.
    async query(sql: string): Promise<string> {
      const marker = `__done_${++counter}_${randomBytes(4).toString("hex")}__`;
      const start = buffer.length;
      child.stdin.write(`${sql}\n\\echo ${marker}\n`);
      for (;;) {
        const at = buffer.indexOf(marker, start);
        if (at >= 0) return buffer.slice(start, at).trim();
        if (exited) throw new Error(`psql session ended: ${errors.trim()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async close(): Promise<void> {
      if (!exited) child.stdin.end("\\q\n");
      await closed;
    },
  };
  await session.query("SELECT 1;");
  return session;
}
