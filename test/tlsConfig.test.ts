// TLS at the front proxy in the stack config: every mode's branch and every refusal, each naming
// the key with its fix, and no message quoting the private key. Certificates are made by a CA of the
// test's own (openssl), valid, expired, for another name, or with another key.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatProblems } from "../components/config/fixes";
import { parseStackConfig } from "../components/config/parse";
import { canaryDatabaseUrl } from "../support/canary";
import { stagingSetup } from "../support/mocks";
import { raw, type Config, type RawOptions } from "../support/rawConfig";
import { makeCa, signServerCertificate } from "../support/throwawayCa";

const DOMAIN = "api.example.test";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-tls-config-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** PEM texts made once: a chain and its key, and the bad variants. */
const pem = { chain: "", key: "", expired: "", expiredKey: "", otherName: "", otherNameKey: "", otherKey: "", caRoot: "" };

beforeAll(async () => {
  const ca = await makeCa(dir, "tls config tests");
  const read = (file: string) => fs.readFileSync(file, "utf8").trim();
  const good = await signServerCertificate(ca, "good", { commonName: DOMAIN, dnsNames: [DOMAIN] });
  const expired = await signServerCertificate(ca, "expired", { commonName: DOMAIN, dnsNames: [DOMAIN], days: -1 });
  const other = await signServerCertificate(ca, "other", { commonName: "other.example.test", dnsNames: ["other.example.test"] });
  Object.assign(pem, {
    chain: `${read(good.certFile)}\n${read(ca.caFile)}`,
    key: read(good.keyFile),
    expired: read(expired.certFile),
    expiredKey: read(expired.keyFile),
    otherName: read(other.certFile),
    otherNameKey: read(other.keyFile),
    otherKey: read(other.keyFile),
    caRoot: read(ca.caFile),
  });
});

const S = "pulumi config set --stack staging";
const P = "pulumi config set --stack prod";
const SECRET_HINT = "   (prompts for the value; or pipe it on stdin)";

function staging(proxy: Config, extra: Config = {}): Config {
  return { ...structuredClone(stagingSetup().config), proxy, ...extra };
}

function prod(proxy?: Config, extra: Config = {}): Config {
  return {
    environment: "prod",
    service: { hostPort: 8081 },
    secrets: { DATABASE_URL: canaryDatabaseUrl("canary-pg-pass-4d1a"), SECRET_KEY: "canary-prod-key-4d1a-0123456789abcdef0123" },
    ...(proxy === undefined ? {} : { proxy }),
    ...extra,
  };
}

function refusal(config: Config, options: RawOptions = {}): string {
  const input = raw(config, options);
  const result = parseStackConfig(input);
  if (result.ok) throw new Error("expected the config to be refused");
  return formatProblems(input.stack, result.problems);
}

function accepted(config: Config, options: RawOptions = {}) {
  const result = parseStackConfig(raw(config, options));
  if (!result.ok) throw new Error(formatProblems("s", result.problems));
  return result.config;
}

/** Every line of a key but its armour: none may show up in a message. */
const keyLines = (key: string) => key.split("\n").filter((line) => !line.startsWith("-----"));

describe("TLS config: each mode as accepted", () => {
  it("acme: the domain, Let's Encrypt by default, HTTPS on 443, plain HTTP on a privileged port", () => {
    const config = accepted(staging({ domain: DOMAIN, tls: { mode: "acme" } }, { service: { hostPort: 80 } }));
    expect(config.proxy).toEqual({
      image: "caddy:2.10",
      domain: DOMAIN,
      httpsPort: 443,
      tls: { mode: "acme", acme: { directory: "https://acme-v02.api.letsencrypt.org/directory" } },
    });
    expect(config.service.hostPort).toBe(80);
  });

  it("acme: a private directory, an account email and the CA root of the directory's HTTPS", () => {
    const acme = { directory: "https://acme.internal:14000/dir", email: "ops@example.test", caRoot: pem.caRoot };
    const config = accepted(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "acme", acme } }));
    expect(config.proxy.tls.acme).toEqual(acme);
    expect(config.proxy.httpsPort).toBe(8443);
  });

  it("certificate: the chain in plain config, its key an encrypted secret the program gets as a value only here", () => {
    const config = accepted(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: pem.key }));
    expect(config.proxy.tls.certificate).toBe(pem.chain);
    expect(config.tlsPrivateKey).toBe(pem.key);
  });

  it("internal: a staging stack may use Caddy's own CA", () => {
    expect(accepted(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "internal" } })).proxy.tls.mode).toBe("internal");
  });

  it("upstream and off: no domain needed; upstream may name it (its url)", () => {
    expect(accepted(staging({ tls: { mode: "upstream" } })).proxy.tls.mode).toBe("upstream");
    expect(accepted(staging({ domain: DOMAIN, tls: { mode: "upstream" } })).proxy.domain).toBe(DOMAIN);
    expect(accepted(staging({})).proxy.tls.mode).toBe("off");
  });

  it("prod may choose acme, certificate or upstream", () => {
    expect(accepted(prod({ domain: DOMAIN, tls: { mode: "acme" } })).proxy.tls.mode).toBe("acme");
    expect(accepted(prod({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: pem.key })).proxy.tls.mode).toBe("certificate");
    expect(accepted(prod({ tls: { mode: "upstream" } })).proxy.tls.mode).toBe("upstream");
  });
});

interface Refused {
  name: string;
  config: () => Config;
  options?: RawOptions;
  at: string;
  message: string;
  fix: string;
}

const choices =
  `${P} --path 'proxy.tls.mode' acme          # Caddy gets and renews a certificate for proxy.domain (Let's Encrypt by default)\n` +
  `         or ${P} --path 'proxy.tls.mode' certificate   # your chain in proxy.tls.certificate, its key in the secret tlsPrivateKey\n` +
  `         or ${P} --path 'proxy.tls.mode' upstream      # TLS ends at your own load balancer in front; the proxy serves HTTP`;

const refused: Refused[] = [
  { name: "prod without a choice", config: () => prod(), at: "proxy.tls.mode", message: "is not set (off, plain HTTP, is the default), but a prod stack must choose how its TLS ends: acme, certificate or upstream", fix: choices },
  { name: "prod with off", config: () => prod({ tls: { mode: "off" } }), at: "proxy.tls.mode", message: "is off, but a prod stack must choose", fix: choices },
  { name: "prod with internal", config: () => prod({ domain: DOMAIN, tls: { mode: "internal" } }), at: "proxy.tls.mode", message: "is internal, but a prod stack must choose how its TLS ends: acme, certificate or upstream: Caddy's internal CA is trusted by no client", fix: choices },
  { name: "an unknown mode", config: () => staging({ tls: { mode: "tls" } }), at: "proxy.tls.mode", message: "Invalid option", fix: `${S} --path 'proxy.tls.mode' acme` },
  { name: "acme without a domain", config: () => staging({ tls: { mode: "acme" } }), at: "proxy.domain", message: "is required when proxy.tls.mode is acme: it is the name the certificate is for", fix: `${S} --path 'proxy.domain' api.example.com` },
  { name: "internal without a domain", config: () => staging({ tls: { mode: "internal" } }), at: "proxy.domain", message: "is required when proxy.tls.mode is internal", fix: `${S} --path 'proxy.domain' api.example.com` },
  { name: "a domain with a scheme", config: () => staging({ domain: `https://${DOMAIN}`, tls: { mode: "acme" } }), at: "proxy.domain", message: "expected a lowercase host name", fix: `${S} --path 'proxy.domain' api.example.com` },
  { name: "a wildcard domain", config: () => staging({ domain: `*.example.test`, tls: { mode: "acme" } }), at: "proxy.domain", message: "expected a lowercase host name", fix: `${S} --path 'proxy.domain' api.example.com` },
  {
    name: "an ACME directory that is not https",
    config: () => staging({ domain: DOMAIN, tls: { mode: "acme", acme: { directory: "http://acme.internal/dir" } } }),
    at: "proxy.tls.acme.directory",
    message: "expected the https:// URL of an ACME directory",
    fix: `${S} --path 'proxy.tls.acme.directory' https://acme-v02.api.letsencrypt.org/directory`,
  },
  { name: "an ACME email that is not one", config: () => staging({ domain: DOMAIN, tls: { mode: "acme", acme: { email: "ops" } } }), at: "proxy.tls.acme.email", message: "expected an email address", fix: `${S} --path 'proxy.tls.acme.email' ops@example.com` },
  { name: "a CA root that is no PEM", config: () => staging({ domain: DOMAIN, tls: { mode: "acme", acme: { caRoot: "root" } } }), at: "proxy.tls.acme.caRoot", message: "holds no PEM certificate", fix: `${S} --path 'proxy.tls.acme.caRoot' < acme-ca-root.pem` },
  { name: "a CA root that is a server certificate", config: () => staging({ domain: DOMAIN, tls: { mode: "acme", acme: { caRoot: pem.otherName } } }), at: "proxy.tls.acme.caRoot", message: "is not a CA certificate", fix: `${S} --path 'proxy.tls.acme.caRoot' < acme-ca-root.pem` },
  { name: "acme settings in another mode", config: () => staging({ domain: DOMAIN, tls: { mode: "internal", acme: { email: "ops@example.test" } } }), at: "proxy.tls.acme", message: "only applies to proxy.tls.mode acme (it is internal)", fix: "pulumi config rm --stack staging --path 'proxy.tls.acme'" },
  { name: "certificate without its chain", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate" } }, { tlsPrivateKey: pem.key }), at: "proxy.tls.certificate", message: "is required when proxy.tls.mode is certificate", fix: `${S} --path 'proxy.tls.certificate' < fullchain.pem` },
  { name: "certificate without its key", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.chain } }), at: "tlsPrivateKey", message: "is required when proxy.tls.mode is certificate", fix: `${S} --secret 'tlsPrivateKey'${SECRET_HINT}` },
  { name: "a chain that does not parse", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----" } }, { tlsPrivateKey: pem.key }), at: "proxy.tls.certificate", message: "does not parse as PEM certificates", fix: `${S} --path 'proxy.tls.certificate' < fullchain.pem` },
  { name: "an expired certificate", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.expired } }, { tlsPrivateKey: pem.expiredKey }), at: "proxy.tls.certificate", message: "expired at ", fix: `${S} --path 'proxy.tls.certificate' < fullchain.pem` },
  { name: "a certificate for another name", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.otherName } }, { tlsPrivateKey: pem.otherNameKey }), at: "proxy.tls.certificate", message: `does not cover proxy.domain ${DOMAIN} (its first certificate is for other.example.test)`, fix: `${S} --path 'proxy.tls.certificate' < fullchain.pem` },
  { name: "a key that is not the certificate's", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: pem.otherKey }), at: "tlsPrivateKey", message: "does not match proxy.tls.certificate", fix: `${S} --secret 'tlsPrivateKey'${SECRET_HINT}` },
  { name: "a key that is no key", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: "canary-not-a-key-4d1a" }), at: "tlsPrivateKey", message: "is not an unencrypted PEM private key", fix: `${S} --secret 'tlsPrivateKey'${SECRET_HINT}` },
  { name: "a key stored in plain text", config: () => staging({ domain: DOMAIN, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: pem.key }), options: { encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY"] }, at: "tlsPrivateKey", message: "is stored in plain text; set it with --secret", fix: `${S} --secret 'tlsPrivateKey'${SECRET_HINT}` },
  { name: "a chain in another mode", config: () => staging({ domain: DOMAIN, tls: { mode: "acme", certificate: pem.chain } }), at: "proxy.tls.certificate", message: "only applies to proxy.tls.mode certificate (it is acme)", fix: "pulumi config rm --stack staging --path 'proxy.tls.certificate'" },
  { name: "a key in another mode", config: () => staging({ domain: DOMAIN, tls: { mode: "acme" } }, { tlsPrivateKey: pem.key }), at: "tlsPrivateKey", message: "is set but proxy.tls.mode is acme, not certificate; remove it", fix: "pulumi config rm --stack staging 'tlsPrivateKey'" },
  { name: "a privileged port without TLS at the proxy", config: () => staging({ tls: { mode: "upstream" } }, { service: { hostPort: 80 } }), at: "service.hostPort", message: "is below 1024, which only a stack whose proxy terminates TLS may publish", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "HTTPS on the plain-HTTP port", config: () => staging({ domain: DOMAIN, httpsPort: 8080, tls: { mode: "internal" } }), at: "proxy.httpsPort", message: "is also service.hostPort", fix: `${S} --path 'proxy.httpsPort' 443` },
  { name: "an HTTPS port without TLS at the proxy", config: () => staging({ httpsPort: 8443, tls: { mode: "upstream" } }), at: "proxy.httpsPort", message: "only applies when the proxy terminates TLS (proxy.tls.mode is upstream)", fix: "pulumi config rm --stack staging --path 'proxy.httpsPort'" },
  { name: "a domain with TLS off", config: () => staging({ domain: DOMAIN }), at: "proxy.domain", message: "only applies when TLS is on", fix: "pulumi config rm --stack staging --path 'proxy.domain'" },
];

describe("TLS config: each bad setting is refused with its key and fix, never quoting the key", () => {
  it.each(refused.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const message = refusal(c.config(), c.options);
    expect(message).toContain(`→ at ${c.at}\n`);
    expect(message).toContain(c.message);
    expect(message).toContain(`fix: ${c.fix}`);
    for (const line of [...keyLines(pem.key), ...keyLines(pem.otherKey), "canary-not-a-key-4d1a", "canary-pg-pass-4d1a"]) expect(message).not.toContain(line);
  });

  it("reports a privileged port together with the schema's own problems", () => {
    const config = staging({ tls: { mode: "nope" } }, { service: { hostPort: 443 } });
    const result = parseStackConfig(raw(config));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.path.join(".")).sort()).toEqual(["proxy.tls.mode", "service.hostPort"]);
  });

  it("checks expiry against the time it is given", () => {
    const config = staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "certificate", certificate: pem.chain } }, { tlsPrivateKey: pem.key });
    expect(parseStackConfig(raw(config, { now: new Date(Date.now() + 3 * 86_400_000) })).ok).toBe(false);
    expect(parseStackConfig(raw(config, { now: new Date() })).ok).toBe(true);
  });
});
