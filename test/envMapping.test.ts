import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { appEnvFor, containerEnv, withLoopbackHost } from "../components/envMapping";
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

describe("containerEnv", () => {
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
});
