/**
 * The contract between stacks: the shapes of the stack outputs that staging publishes and prod
 * reads (see DESIGN.md, "Stack outputs are the contract between stacks"). The zod schemas are the
 * single definition; the TypeScript types are inferred from them.
 */
import { z } from "zod";

/** `sha256:` followed by 64 lowercase hex digits. */
export const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, "expected sha256:<64 hex digits>");
export type Digest = z.infer<typeof Digest>;

/** Where a stack runs: decides its role. */
export const Environment = z.enum(["staging", "prod"]);
export type Environment = z.infer<typeof Environment>;

/** Hardening facts observed on the running container (not copied from config). */
export const Hardening = z.object({
  /** The user the container runs as, e.g. "10001" or "10001:10001"; never "", "root" or "0". */
  user: z.string(),
  readOnlyRootFilesystem: z.boolean(),
  capabilitiesDropped: z.array(z.string()),
  noNewPrivileges: z.boolean(),
});
export type Hardening = z.infer<typeof Hardening>;

/** What a readiness check recorded about one running image. */
export const Readiness = z.object({
  ready: z.boolean(),
  imageDigest: Digest,
  /** ISO-8601, UTC. */
  checkedAt: z.iso.datetime(),
  /** The URL that was probed. */
  url: z.string(),
  /** From the backend's `/version`. */
  version: z.string(),
  hardening: Hardening,
  /** A replicated target (Swarm): how many replicas it asked for, and how many the check found ready. */
  replicas: z.object({ desired: z.int().min(1), ready: z.int().min(0) }).optional(),
});
export type Readiness = z.infer<typeof Readiness>;

/** An image reference: `<repo>@sha256:...` where a registry is used, else the local image id. */
export const ImageRef = z.string().refine((ref) => ref.trim() !== "", "expected a non-empty image reference");

/** What a rollback records: the release it left, and when. */
export const RollbackRecord = z.object({ fromImageRef: ImageRef, at: z.iso.datetime() });
export type RollbackRecord = z.infer<typeof RollbackRecord>;

/** How the front proxy handles TLS (`proxy.tls.mode`). */
export const TlsMode = z.enum(["acme", "certificate", "internal", "upstream", "off"]);
export type TlsMode = z.infer<typeof TlsMode>;

/** The modes in which the proxy itself terminates TLS, and so serves a certificate of its own. */
export const PROXY_TLS_MODES = ["acme", "certificate", "internal"] as const satisfies readonly TlsMode[];

/** Whether the proxy terminates TLS in `mode`. */
export function terminatesTls(mode: TlsMode): mode is (typeof PROXY_TLS_MODES)[number] {
  return (PROXY_TLS_MODES as readonly string[]).includes(mode);
}

/** A certificate's SHA-256 fingerprint, as openssl and Node print it: 32 colon-separated uppercase hex pairs. */
export const Fingerprint = z.string().regex(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, "expected a SHA-256 fingerprint (AB:CD:...)");

/**
 * What the stack serves over TLS: the mode, and where the proxy terminates TLS, the certificate it
 * served when the program last looked through the proxy (never copied from config).
 */
export const TlsRecord = z
  .object({
    mode: TlsMode,
    /** `proxy.domain`, when the stack has one. */
    domain: z.string().optional(),
    /** The served certificate's issuer, e.g. `CN=R11, O=Let's Encrypt, C=US`. */
    issuer: z.string().optional(),
    /** When the served certificate expires (ISO-8601, UTC). */
    notAfter: z.iso.datetime().optional(),
    /** SHA-256 fingerprint of the served certificate. */
    fingerprint: Fingerprint.optional(),
  })
  .refine((r) => !terminatesTls(r.mode) || (r.issuer !== undefined && r.notAfter !== undefined && r.fingerprint !== undefined), {
    message: "a proxy that terminates TLS records the certificate it served (issuer, notAfter, fingerprint)",
  });
export type TlsRecord = z.infer<typeof TlsRecord>;

/**
 * What a stack knows of its image's signature and SBOM: staging's signing (`signed`), prod's gate
 * verifying it against `promotion.signing.publicKey` (`verified`), or, said plainly, none: the
 * single-host path without a registry has nowhere to keep a signature (`unsigned`), and a recorded
 * override may let an image through that did not verify (`not-verified`).
 */
export const SupplyChainRecord = z.discriminatedUnion("status", [
  z.object({
    status: z.enum(["signed", "verified"]),
    imageDigest: Digest,
    /** Digest of the signature manifest in the registry (the `.sig` tag). */
    signatureDigest: Digest,
    /** Digest of the SBOM attestation's manifest (the `.att` tag). */
    attestationDigest: Digest,
    sbom: z.object({ format: z.literal("spdx-json"), packages: z.int().nonnegative() }),
    /** `sha256:` of the public key's DER encoding: which key, without printing it. */
    publicKeyFingerprint: Digest,
  }),
  z.object({ status: z.enum(["unsigned", "not-verified"]), reason: z.string() }),
]);
export type SupplyChainRecord = z.infer<typeof SupplyChainRecord>;

/** The outputs every backend stack exports, staging and prod alike. */
export const StackOutputs = z.object({
  environment: Environment,
  /** Pinned by digest where a registry is used, else the local image id. */
  imageRef: ImageRef,
  imageDigest: Digest,
  url: z.string(),
  readiness: Readiness,
  /**
   * The last *different* image the stack ran: the rollback target. Absent until there is one; null
   * where staging's new image was not known yet when the program ran and turned out to be the same.
   */
  previousImageRef: ImageRef.nullish(),
  /** Present after a rollback, while the stack runs the image it rolled back to. */
  rollback: RollbackRecord.optional(),
  /** What the stack serves over TLS; absent in outputs of a program from before TLS at the proxy. */
  tls: TlsRecord.optional(),
  /** The image's signature and SBOM, or why there are none; absent from stacks older than signing. */
  supplyChain: SupplyChainRecord.optional(),
});
export type StackOutputs = z.infer<typeof StackOutputs>;

/** What prod reads of the staging stack: its required outputs, and `environment` must say staging. */
export const StagingContract = StackOutputs.pick({ imageRef: true, imageDigest: true, readiness: true }).extend({
  environment: z.literal("staging"),
});

/** Where prod's image came from: the staging stack and the check that proved it. */
export const PromotedFrom = z.object({ stack: z.string(), imageDigest: Digest, checkedAt: z.string() });

/** A recorded break-glass approval for a promotion the gate would otherwise refuse. */
export const PromotionOverride = z.object({ reason: z.string(), approvedBy: z.string() });
export type PromotionOverride = z.infer<typeof PromotionOverride>;

/** Prod's outputs: the common ones, plus where the image came from. */
export const ProdOutputs = StackOutputs.extend({
  /** The staging stack and check behind the image; absent after a rollback, which needs none. */
  promotedFrom: PromotedFrom.optional(),
  /** Present only when an override let a refused promotion through. */
  promotionOverride: PromotionOverride.optional(),
});
export type ProdOutputs = z.infer<typeof ProdOutputs>;

/** Secrets every stack must set (`secrets.<NAME>`): the backend refuses to start without them. */
export const REQUIRED_SECRETS = ["DATABASE_URL", "SECRET_KEY"] as const;
export type RequiredSecret = (typeof REQUIRED_SECRETS)[number];

export { isRootUser } from "./names";
