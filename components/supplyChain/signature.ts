/**
 * Staging's signature of the image it pushed: `syft` makes an SPDX JSON SBOM of the pushed digest
 * (read from the registry, so it describes the bytes prod will pull), then `cosign` signs the digest
 * and attests the SBOM (`--type spdxjson`) with the staging key, without a transparency log
 * (`--tlog-upload=false --use-signing-config=false`) and on the classic `.sig`/`.att` tags
 * (`--new-bundle-format=false`: a registry without the referrers API holds them too).
 *
 * A dynamic resource, so it runs in `pulumi up` only, after the push, and never in a preview. The key
 * and its password are inputs (the signing needs them), kept in state as secrets, and reach cosign
 * through its environment only. It is replaced (signed again) when the image or the key changes, and
 * a refresh that finds the signature or attestation no longer verifying drops it, so the next
 * `pulumi up --refresh` signs again. Deleting it leaves the signatures in the registry: prod may
 * still run, or roll back to, that image.
 */
import * as pulumi from "@pulumi/pulumi";
import { endpointInputs, type DockerEndpoint } from "../docker/client";
import type { RegistryCredentials } from "../hostImage";
import { publicKeyFingerprint } from "./keys";
import { sbomPackages } from "./sbom";
import { cosignRegistryFlags, runTool, toolError, type ToolResult } from "./tools";
import { artifactDigest, verifyImage } from "./verify";

/** What the signing resource is given. */
export interface ImageSignatureInputs {
  /** `<repo>@sha256:<digest>`, as pushed. */
  imageRef: string;
  server: string;
  username: string;
  /** Registry password with push rights (secret). */
  password: string;
  /** The cosign private key, PEM, encrypted with `keyPassword` (secret). */
  privateKey: string;
  /** Its password (secret). */
  keyPassword: string;
  /** The engine asked for the signature and attestation manifests' digests (the one that pushed). */
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What it records besides its inputs. */
export interface ImageSignatureOutputs extends ImageSignatureInputs {
  signatureDigest: string;
  attestationDigest: string;
  /** Packages in the attested SBOM (Python and Debian packages of the image). */
  sbomPackages: number;
  /** The key's public half (PEM) and its fingerprint: what prod's `promotion.signing.publicKey` must be. */
  publicKey: string;
  publicKeyFingerprint: string;
}

const NO_TLOG = ["--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false", "--yes"];

/** Makes the SBOM, signs, attests; throws with the tool's own (redacted) error. */
async function signImage(inputs: ImageSignatureInputs): Promise<ImageSignatureOutputs> {
  const login = { server: inputs.server, username: inputs.username, password: inputs.password };
  const key = { COSIGN_PRIVATE_KEY: inputs.privateKey, COSIGN_PASSWORD: inputs.keyPassword };
  const registryFlags = cosignRegistryFlags(inputs.server);
  const failed = (what: string, result: ToolResult) => new Error(`${what} of ${inputs.imageRef} failed: ${toolError(result)}`);

  const [sbom, signed, publicKey] = await Promise.all([
    runTool("syft", ["scan", `registry:${inputs.imageRef}`, "-o", "spdx-json={dir}/sbom.spdx.json", "-q"], { registry: login, collect: ["sbom.spdx.json"], timeoutMs: 300_000 }),
    runTool("cosign", ["sign", "--key", "env://COSIGN_PRIVATE_KEY", ...NO_TLOG, ...registryFlags, inputs.imageRef], { registry: login, env: key }),
    runTool("cosign", ["public-key", "--key", "env://COSIGN_PRIVATE_KEY"], { env: key }),
  ]);
  if (publicKey.code !== 0) throw failed("reading the signing key (cosignPrivateKey with cosignPassword)", publicKey);
  if (signed.code !== 0) throw failed("cosign sign", signed);
  const document = sbom.files["sbom.spdx.json"];
  if (sbom.code !== 0 || document === undefined) throw failed("syft's SBOM", sbom);
  const packages = sbomPackages(JSON.parse(document)).length;
  const attested = await runTool(
    "cosign",
    ["attest", "--key", "env://COSIGN_PRIVATE_KEY", "--type", "spdxjson", "--predicate", "{dir}/sbom.spdx.json", ...NO_TLOG, ...registryFlags, inputs.imageRef],
    { registry: login, env: key, files: { "sbom.spdx.json": document } },
  );
  if (attested.code !== 0) throw failed("cosign attest", attested);

  const image = { imageRef: inputs.imageRef, login, docker: { ...(inputs.dockerHost === undefined ? {} : { host: inputs.dockerHost }), ...(inputs.dockerSshOpts === undefined ? {} : { sshOpts: inputs.dockerSshOpts }) } };
  const [signatureDigest, attestationDigest] = await Promise.all([artifactDigest(image, "sig"), artifactDigest(image, "att")]);
  const pem = publicKey.stdout.trim();
  return { ...inputs, signatureDigest, attestationDigest, sbomPackages: packages, publicKey: pem, publicKeyFingerprint: publicKeyFingerprint(pem) };
}

/** The provider; see the module comment. */
export const imageSignatureProvider: pulumi.dynamic.ResourceProvider<ImageSignatureInputs, ImageSignatureOutputs> = {
  async diff(_id, olds, news) {
    // A new registry token (every CI run has one) is no reason to sign again; a new image or key is.
    const replaces = (["imageRef", "privateKey"] as const).filter((key) => olds[key] !== news[key]);
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },
  async create(inputs) {
    const outs = await signImage(inputs);
    return { id: `${inputs.imageRef}#${outs.publicKeyFingerprint}`, outs };
  },
  async read(id, props) {
    if (props === undefined) return { id };
    const login = { server: props.server, username: props.username, password: props.password };
    const check = await verifyImage({ imageRef: props.imageRef, login }, props.publicKey);
    // No longer verifying (deleted, replaced, altered): gone, so the next update signs again.
    return check.verified ? { id, props } : {};
  },
  // The signatures stay with the image in the registry; see the module comment.
  async delete() {},
};

/** The resource; see {@link imageSignatureProvider}. */
class SignatureResource extends pulumi.dynamic.Resource {
  declare public readonly signatureDigest: pulumi.Output<string>;
  declare public readonly attestationDigest: pulumi.Output<string>;
  declare public readonly sbomPackages: pulumi.Output<number>;
  declare public readonly publicKeyFingerprint: pulumi.Output<string>;
  constructor(name: string, args: { [K in keyof ImageSignatureInputs]: pulumi.Input<ImageSignatureInputs[K]> }, opts: pulumi.CustomResourceOptions) {
    const outputs = { signatureDigest: undefined, attestationDigest: undefined, sbomPackages: undefined, publicKey: undefined, publicKeyFingerprint: undefined };
    super(imageSignatureProvider, name, { ...args, ...outputs }, { ...opts, additionalSecretOutputs: ["password", "privateKey", "keyPassword"] });
  }
}

/** The staging key, as secret Outputs (the stack secrets `cosignPrivateKey` and `cosignPassword`). */
export interface SigningKey {
  privateKey: pulumi.Input<string>;
  password: pulumi.Input<string>;
}

/** Arguments of {@link ImageSignature}. */
export interface ImageSignatureArgs {
  /** The pushed image, pinned: `<repo>@sha256:<digest>`. */
  imageRef: pulumi.Input<string>;
  /** The registry it was pushed to, with push rights. */
  registry: RegistryCredentials;
  key: SigningKey;
  /** The engine that pushed (where pulumi runs); the local one when unset. */
  docker?: DockerEndpoint;
}

/** The record of a signed image, as staging exports it in `supplyChain`. */
export interface SignedRecord {
  status: "signed";
  imageDigest: string;
  signatureDigest: string;
  attestationDigest: string;
  sbom: { format: "spdx-json"; packages: number };
  publicKeyFingerprint: string;
}

/** Signs and attests the pushed image; see the module comment. */
export class ImageSignature extends pulumi.ComponentResource {
  /** What staging exports as `supplyChain`. */
  public readonly record: pulumi.Output<SignedRecord>;

  constructor(name: string, args: ImageSignatureArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:ImageSignature", name, {}, opts);
    const signed = new SignatureResource(
      `${name}-signature`,
      {
        imageRef: args.imageRef,
        server: args.registry.server,
        username: args.registry.username,
        password: pulumi.secret(args.registry.password),
        privateKey: pulumi.secret(args.key.privateKey),
        keyPassword: pulumi.secret(args.key.password),
        ...endpointInputs(args.docker),
      },
      { parent: this },
    );
    this.record = pulumi
      .all([args.imageRef, signed.signatureDigest, signed.attestationDigest, signed.sbomPackages, signed.publicKeyFingerprint])
      .apply(([ref, signatureDigest, attestationDigest, packages, publicKeyFingerprint]) => ({
        status: "signed" as const,
        imageDigest: ref.slice(ref.lastIndexOf("@") + 1),
        signatureDigest,
        attestationDigest,
        sbom: { format: "spdx-json" as const, packages },
        publicKeyFingerprint,
      }));
    this.registerOutputs({ record: this.record });
  }
}
