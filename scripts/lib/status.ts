/**
 * What `npm run status` shows of one stack: read from its outputs (through the output contract),
 * from what its Docker host reports, and from the record of its last drift check; then rendered as
 * one screen, or as JSON for scripts. Pure: no I/O. Never a secret: outputs the engine marks secret
 * are never read, and nothing here holds a configuration value.
 */
import { z } from "zod";
import { ProdOutputs, type TlsRecord } from "../../components/contract";
import type { DriftRecord } from "./drift";

/** What Swarm image retention did on one node in its last run, as the stack's state records it (components/swarm/nodeImages.ts). */
const NodeImagesRecord = z.object({ node: z.string(), kept: z.array(z.string()), removed: z.array(z.string()) });
export type NodeImagesRecord = z.infer<typeof NodeImagesRecord>;

/**
 * The per-node record of the stack's Swarm image retention (the resource `<project>-<stack>-images`)
 * in a `pulumi stack export` document; undefined when there is none (a single host, or nothing deployed).
 */
export function swarmRetentionRecord(exported: unknown, project: string, stack: string): NodeImagesRecord[] | undefined {
  const resources = (exported as { deployment?: { resources?: unknown } } | undefined)?.deployment?.resources;
  if (!Array.isArray(resources)) return undefined;
  const resource = (resources as { urn?: unknown; outputs?: { nodes?: unknown } }[]).find((r) => typeof r.urn === "string" && r.urn.endsWith(`::${project}-${stack}-images`));
  const nodes = z.array(NodeImagesRecord).safeParse(resource?.outputs?.nodes);
  return nodes.success ? nodes.data.map(({ node, kept, removed }) => ({ node, kept, removed })) : undefined;
}

/** What the Docker host reported, or why it could not. */
export type HostView =
  | {
      reachable: true;
      /** The release containers of the stack (single host), newest first. */
      releases: { name: string; state: string; startedAt: string; image: string }[];
      /** Swarm: the service's tasks, when the stack runs as one. */
      replicas?: { running: number; desired: number };
      /** The stack's images the host keeps (its own tags), newest first. */
      keptImages: { id: string; created: string }[];
    }
  | { reachable: false; error: string };

/** Everything the status screen says. */
export interface StackStatus {
  stack: string;
  environment?: string;
  url?: string;
  serving?: { imageRef: string; imageDigest: string; since?: string; release?: string };
  readiness?: { ready: boolean; checkedAt: string; version: string };
  rollbackTarget?: string;
  rollback?: { fromImageRef: string; at: string };
  promotedFrom?: { stack: string; imageDigest: string; checkedAt: string };
  tls?: { mode: string; issuer?: string; notAfter?: string; daysLeft?: number };
  replicas?: { running: number; desired: number };
  keptImages?: { id: string; created: string }[];
  /** Swarm: what image retention kept on each node that ran the service's tasks, in its last run. */
  nodeImages?: NodeImagesRecord[];
  drift?: DriftRecord;
  host: HostView;
  /** Outputs that did not keep the contract: named, never shown. */
  problems: string[];
}

const DAY_MS = 86_400_000;

/** What the `tls` output (the certificate the proxy served, observed through it) says of its validity. */
function tlsOf(tls: TlsRecord | undefined, now: Date): StackStatus["tls"] | undefined {
  if (tls === undefined) return undefined;
  const expiry = tls.notAfter === undefined ? Number.NaN : Date.parse(tls.notAfter);
  return {
    mode: tls.mode,
    ...(tls.issuer === undefined ? {} : { issuer: tls.issuer }),
    ...(Number.isNaN(expiry) ? {} : { notAfter: new Date(expiry).toISOString(), daysLeft: Math.floor((expiry - now.getTime()) / DAY_MS) }),
  };
}

/** Builds the status from the stack's outputs (`pulumi stack output --json`), the host's view and the drift record. */
export function stackStatus(stack: string, outputs: Record<string, unknown>, host: HostView, drift: DriftRecord | undefined, now: Date, nodeImages?: NodeImagesRecord[]): StackStatus {
  const parsed = ProdOutputs.partial().safeParse(outputs);
  const problems = parsed.success ? [] : [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? "(outputs)")))];
  const o = parsed.success ? parsed.data : {};
  const serving = host.reachable ? host.releases.find((r) => r.state === "running") : undefined;
  const tls = tlsOf(o.tls, now);
  return {
    stack,
    ...(o.environment === undefined ? {} : { environment: o.environment }),
    ...(o.url === undefined ? {} : { url: o.url }),
    ...(o.imageRef === undefined || o.imageDigest === undefined
      ? {}
      : { serving: { imageRef: o.imageRef, imageDigest: o.imageDigest, ...(serving === undefined ? {} : { since: serving.startedAt, release: serving.name }) } }),
    ...(o.readiness === undefined ? {} : { readiness: { ready: o.readiness.ready, checkedAt: o.readiness.checkedAt, version: o.readiness.version } }),
    ...(typeof o.previousImageRef === "string" ? { rollbackTarget: o.previousImageRef } : {}),
    ...(o.rollback === undefined ? {} : { rollback: o.rollback }),
    ...(o.promotedFrom === undefined ? {} : { promotedFrom: o.promotedFrom }),
    ...(tls === undefined ? {} : { tls }),
    ...(host.reachable && host.replicas !== undefined ? { replicas: host.replicas } : {}),
    ...(host.reachable ? { keptImages: host.keptImages } : {}),
    ...(nodeImages === undefined ? {} : { nodeImages }),
    ...(drift === undefined ? {} : { drift }),
    host,
    problems,
  };
}

/** "3 h ago", "5 days ago", for a time before `now`. */
function ago(iso: string, now: Date): string {
  const ms = now.getTime() - Date.parse(iso);
  if (Number.isNaN(ms)) return "at an unreadable time";
  if (ms < 0) return "in the future";
  const minutes = Math.round(ms / 60_000);
  if (minutes < 90) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h ago` : `${Math.round(hours / 24)} days ago`;
}

const short = (id: string) => id.replace(/^sha256:/, "").slice(0, 12);

/** The one screen `npm run status` prints. */
export function renderStatus(s: StackStatus, now: Date): string[] {
  const lines = [`Stack ${s.stack}${s.environment === undefined ? "" : ` (${s.environment})`}`];
  const row = (label: string, text: string) => lines.push(`  ${`${label}:`.padEnd(15)}${text}`);
  if (s.serving === undefined) row("Serving", "nothing recorded: the stack has no imageRef output (deploy it first)");
  else {
    const since = s.serving.since === undefined ? "" : ` since ${s.serving.since} (${ago(s.serving.since, now)})`;
    row("Serving", `${s.serving.imageDigest}${since}`);
    if (s.serving.imageRef !== s.serving.imageDigest) row("Image", s.serving.imageRef);
    if (s.serving.release !== undefined) row("Release", s.serving.release);
  }
  if (s.url !== undefined) row("URL", s.url);
  if (s.replicas !== undefined) row("Replicas", `${s.replicas.running}/${s.replicas.desired} running`);
  if (s.readiness !== undefined) {
    row("Readiness", `${s.readiness.ready ? "ready" : "NOT ready"}, checked ${s.readiness.checkedAt} (${ago(s.readiness.checkedAt, now)}), version ${s.readiness.version}`);
  }
  row("Rollback to", s.rollbackTarget ?? "none yet (the stack has run one image)");
  if (s.rollback !== undefined) row("Rolled back", `from ${s.rollback.fromImageRef} at ${s.rollback.at}`);
  if (s.promotedFrom !== undefined) row("Promoted from", `${s.promotedFrom.stack}, its check at ${s.promotedFrom.checkedAt}`);
  if (s.tls !== undefined) {
    const issuer = s.tls.issuer === undefined ? "" : ` from ${s.tls.issuer}`;
    row("TLS", `${s.tls.mode}${s.tls.notAfter === undefined ? "" : `, certificate${issuer} valid until ${s.tls.notAfter} (${s.tls.daysLeft} days left)`}`);
  }
  if (!s.host.reachable) row("Docker host", `did not answer: ${s.host.error}`);
  else {
    const kept = s.host.keptImages;
    row("Images kept", kept.length === 0 ? "none tagged by this stack" : `${kept.length}: ${kept.map((i) => short(i.id)).join(", ")}`);
  }
  (s.nodeImages ?? []).forEach((n, i) => {
    const text = `${short(n.node)}: ${n.kept.length}: ${n.kept.map(short).join(", ")}${n.removed.length === 0 ? "" : ` (the last run removed ${n.removed.length})`}`;
    if (i === 0) row("On each node", text);
    else lines.push(`  ${"".padEnd(15)}${text}`);
  });
  if (s.drift === undefined) row("Drift", "never checked (npm run drift -- <stack>)");
  else {
    const what = { none: "none", drift: `DRIFT in ${s.drift.changes} resource(s)`, unknown: "the last check could not decide" }[s.drift.status];
    row("Drift", `${what}, checked ${s.drift.checkedAt} (${ago(s.drift.checkedAt, now)})`);
  }
  if (s.problems.length > 0) row("Outputs", `not in the contract's shape: ${s.problems.join(", ")} (run pulumi up with the current program)`);
  return lines;
}
