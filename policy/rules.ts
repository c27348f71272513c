/**
 * The pack's rules, all mandatory: what every backend container, Swarm service and release container
 * must be before `pulumi preview` or `pulumi up` lets it through. Each message names the resource,
 * the property and the fix. The hardening profile (components/hardening.ts) meets every one; these
 * catch a change of the program that would drop a piece of it, before anything is deployed rather
 * than after (the readiness check observes the running container, prod's gate reads that record).
 *
 * Where the Docker provider's `Service` has no input for a fact (no-new-privileges, a pids limit,
 * privileged mode, the PID namespace), the rule is reported as not applicable to it, with why: the
 * Swarm target observes those on its running tasks instead.
 *
 * CrossGuard hands a policy every input decrypted, with no sign of which were secret
 * (https://github.com/pulumi/pulumi-policy/issues/241), so "no plain-text value under a
 * secret-looking name" is checked where a value is plain text whatever Pulumi marks: container and
 * service environment lists (shown by `docker inspect` and stored in the provider's state) and labels.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";

export type { ResourceValidationArgs };
import { isRootUser, looksSecret } from "../components/names";
import { ENVIRONMENT_LABEL, KIND_LABEL, ROLE_LABEL, facts, kindOf, labelsOf, type Kind, type Props } from "./workloads";

/** One rule: the problems it finds in a workload's inputs, each with its property and fix. */
interface Rule {
  name: string;
  description: string;
  /** Problems found, or a string: why the rule cannot apply to this kind. */
  check: (kind: Kind, props: Props) => Finding[] | string;
}

/** One problem: the property at fault, what is wrong, and the fix. */
export interface Finding {
  property: string;
  problem: string;
  fix: string;
}

const PROFILE = "components/hardening.ts";
const NO_FIELD = "the Docker provider's Service has no input for it; the Swarm target observes it on every running task";
const PINNED = /^(sha256:[0-9a-f]{64}|[^\s@]+@sha256:[0-9a-f]{64})$/;
const DOCKER_SOCKET = /(^|\/)docker\.sock$/;

const finding = (property: string, problem: string, fix: string): Finding[] => [{ property, problem, fix }];

export const RULES: readonly Rule[] = [
  {
    name: "non-root-user",
    description: "Runs as a numeric non-root user, never the image's default (root in most images).",
    check: (kind, p) => {
      const { property, value } = facts.user(kind, p);
      if (!isRootUser(value ?? "")) return [];
      return finding(property, value === undefined || value === "" ? "is unset, so it runs as the image's default user" : `is ${JSON.stringify(value)}, which is root`, `set \`${property}\` to a non-root uid:gid such as 10001:10001 (${PROFILE})`);
    },
  },
  {
    name: "read-only-root-filesystem",
    description: "Mounts the image's root file system read-only; writable paths are tmpfs or volumes.",
    check: (kind, p) => {
      const { property, value } = facts.readOnly(kind, p);
      return value === true ? [] : finding(property, `is ${JSON.stringify(value ?? null)}, not true`, `set \`${property}\` to true and give the paths it writes a tmpfs or a volume (${PROFILE})`);
    },
  },
  {
    name: "capabilities-dropped",
    description: "Drops every Linux capability (ALL); one added back must be named on purpose.",
    check: (kind, p) => {
      const { property, value } = facts.capDrop(kind, p);
      return value.some((c) => c.toUpperCase() === "ALL") ? [] : finding(property, `does not drop ALL (drops: ${value.length === 0 ? "none" : value.join(", ")})`, `add "ALL" to \`${property}\` (${PROFILE})`);
    },
  },
  {
    name: "no-new-privileges",
    description: "Sets no-new-privileges, so no setuid binary can raise its privileges.",
    check: (kind, p) => {
      if (kind === "service") return NO_FIELD;
      const { property, value } = facts.securityOpts(kind, p);
      return value.some((o) => /^no-new-privileges([:=]true)?$/.test(o)) ? [] : finding(property, "lacks no-new-privileges", `add "no-new-privileges:true" to \`${property}\` (${PROFILE})`);
    },
  },
  {
    name: "memory-limit",
    description: "Has a memory limit, so one workload cannot starve the host.",
    check: (kind, p) => {
      const { property, value } = facts.memory(kind, p);
      return typeof value === "number" && value > 0 ? [] : finding(property, "is unset: no memory limit", `set \`${property}\` (service.resources.memoryMb in stack config)`);
    },
  },
  {
    name: "pids-limit",
    description: "Has a process limit, so a fork bomb stays inside the workload.",
    check: (kind, p) => {
      if (kind === "service") return NO_FIELD;
      const { property, value } = facts.pids(kind, p);
      return typeof value === "number" && value > 0 ? [] : finding(property, "is unset: no process limit", `set \`${property}\` (service.resources.pids in stack config)`);
    },
  },
  {
    name: "not-privileged",
    description: "Never runs privileged.",
    check: (kind, p) => {
      if (kind === "service") return "a Swarm service cannot run privileged";
      const { property, value } = facts.privileged(kind, p);
      return value === true ? finding(property, "is true: the workload gets every device and capability of the host", `remove \`${property}\``) : [];
    },
  },
  {
    name: "no-host-namespaces",
    description: "Shares neither the host's network nor its process namespace.",
    check: (kind, p) =>
      facts.hostNamespaces(kind, p).flatMap((f) => finding(f.property, 'is "host": the workload shares the host\'s namespace', `remove \`${f.property}\`; attach the stack's network instead`)),
  },
  {
    name: "no-docker-socket",
    description: "Never mounts the Docker socket, which is root on the host.",
    check: (kind, p) =>
      facts.hostPaths(kind, p)
        .filter((f) => DOCKER_SOCKET.test(f.value))
        .flatMap((f) => finding(f.property, `mounts ${f.value}: whoever runs in the workload controls the host's Docker engine`, `remove that mount from \`${f.property}\``)),
  },
  {
    name: "no-public-ports",
    description: "Publishes no port on every interface (0.0.0.0), except the front proxy's.",
    check: (kind, p) => {
      const open = facts.publishedPorts(kind, p).filter((f) => ["", "0.0.0.0", "::", "[::]"].includes(f.value.ip));
      if (open.length === 0 || labelsOf(kind, p)[ROLE_LABEL] === "proxy") return [];
      return open.flatMap((f) =>
        finding(f.property, `publishes port ${f.value.port} on every interface`, `publish it on 127.0.0.1 (\`ip: "127.0.0.1"\`), or reach it through the front proxy (label ${ROLE_LABEL}=proxy)`),
      );
    },
  },
  {
    name: "prod-images-pinned",
    description: "In prod, runs only images pinned by digest (repo@sha256:... or an image id).",
    check: (kind, p) => {
      if (labelsOf(kind, p)[ENVIRONMENT_LABEL] !== "prod") return [];
      const { property, value } = facts.image(kind, p);
      return typeof value === "string" && PINNED.test(value)
        ? []
        : finding(property, `is ${JSON.stringify(value)}, not pinned by digest: a tag can point at other bytes tomorrow`, `run the digest the gate approved (<repo>@sha256:...) or the pulled image's id`);
    },
  },
  {
    name: "no-plain-secret-names",
    description: "Keeps no value under a secret-looking name (PASSWORD, SECRET, TOKEN, KEY, DATABASE_URL) where it is plain text: environment lists and labels.",
    check: (kind, p) => {
      const env = kind === "release" ? [] : facts.envNames(kind, p);
      const labels = Object.keys(labelsOf(kind, p)).map((name) => ({ property: "labels", value: name }));
      return [...env, ...labels]
        .filter((f) => looksSecret(f.value))
        .flatMap((f) =>
          finding(f.property, `holds ${f.value}, a secret-looking name, in plain text`, "move the value to the stack's secrets (`pulumi config set --secret --path secrets.<NAME>`), which reach the backend through its release's secret environment or Swarm secrets"),
        );
    },
  },
];

/** The message of one finding: the workload, the property and the fix. */
export function message(kind: Kind, name: string, f: Finding): string {
  return `${KIND_LABEL[kind]} ${name}: \`${f.property}\` ${f.problem}; fix: ${f.fix}`;
}

/** A rule as a CrossGuard policy. */
function toPolicy(rule: Rule): ResourceValidationPolicy {
  return {
    name: rule.name,
    description: rule.description,
    enforcementLevel: "mandatory",
    validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
      const kind = kindOf(args.type, args.props as Props);
      if (kind === undefined) return;
      const found = rule.check(kind, args.props as Props);
      if (typeof found === "string") args.notApplicable(found);
      for (const f of found) report(message(kind, args.name, f));
    },
  };
}

/** Every rule as a policy of the pack. */
export const POLICIES: ResourceValidationPolicy[] = RULES.map(toPolicy);
