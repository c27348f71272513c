import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { appEnvFor, containerEnv, plainSettings, withLoopbackHost, withPublicHost } from "../components/envMapping";
import { awaitOutput } from "../support/mocks";

describe("withLoopbackHost", () => {
  it("adds the loopback address the readiness check probes", () => {
    expect(withLoopbackHost("api.example.com, www.example.com")).toBe("api.example.com,www.example.com,127.0.0.1");
  });
  it("keeps a list that already allows it, or allows every host", () => {
    expect(withLoopbackHost("127.0.0.1,api.example.com")).toBe("127.0.0.1,api.example.com");
    expect(withLoopbackHost("*")).toBe("*");
  });
});

describe("withPublicHost", () => {
  it("adds the stack's public name unless an entry covers it", () => {
    expect(withPublicHost(undefined, "api.example.com")).toBe("api.example.com");
    expect(withPublicHost("www.example.com", "api.example.com")).toBe("www.example.com,api.example.com");
    expect(withPublicHost("*.example.com", "api.example.com")).toBe("*.example.com");
    expect(withPublicHost("*", "api.example.com")).toBe("*");
    expect(withPublicHost("*.other.com", "api.example.com")).toBe("*.other.com,api.example.com");
  });
});

describe("containerEnv", () => {
  it("lets the backend accept the public name the TLS front forwards, beside the loopback probes", async () => {
    const env = containerEnv({ appEnv: "staging", port: 8000, env: {}, secrets: {}, publicHost: "api.example.com" });
    expect(await awaitOutput(env)).toEqual(["ALLOWED_HOSTS=api.example.com,127.0.0.1", "APP_ENV=staging", "PORT=8000"]);
  });

  it("sorts entries, sets APP_ENV and PORT, and widens ALLOWED_HOSTS by loopback only", async () => {
    const env = containerEnv({
      appEnv: appEnvFor("prod"),
      port: 8000,
      env: { LOG_LEVEL: "info", ALLOWED_HOSTS: "api.example.com" },
      secrets: { SECRET_KEY: pulumi.secret("canary-key-value") },
    });
    expect(await awaitOutput(env)).toEqual([
      "ALLOWED_HOSTS=api.example.com,127.0.0.1",
      "APP_ENV=production",
      "LOG_LEVEL=info",
      "PORT=8000",
      "SECRET_KEY=canary-key-value",
    ]);
    expect(await pulumi.isSecret(env)).toBe(true);
  });

  it("hands the container the digest of the image it runs (IMAGE_DIGEST), resolved from an Output", async () => {
    const digest = `sha256:${"c".repeat(64)}`;
    const env = containerEnv({ appEnv: "staging", port: 8000, env: {}, secrets: {}, imageDigest: pulumi.output(digest) });
    expect(await awaitOutput(env)).toEqual(["APP_ENV=staging", `IMAGE_DIGEST=${digest}`, "PORT=8000"]);
    expect(await pulumi.isSecret(env)).toBe(false);
  });
});

describe("plainSettings", () => {
  it("sets APP_ENV, PORT and, when known, IMAGE_DIGEST over config's own", () => {
    const digest = `sha256:${"d".repeat(64)}`;
    expect(plainSettings({ appEnv: "production", port: 8000, env: { LOG_LEVEL: "info" }, imageDigest: digest })).toEqual({
      LOG_LEVEL: "info",
      APP_ENV: "production",
      PORT: "8000",
      IMAGE_DIGEST: digest,
    });
    expect(plainSettings({ appEnv: "staging", port: 8000, env: {} })).toEqual({ APP_ENV: "staging", PORT: "8000" });
  });
});
