/**
 * The one redaction every reader calls before it prints (the pull-request comment, the helpers'
 * messages, `pulumi`'s output): given values in their escaped forms, and credential shapes.
 */
import { describe, expect, it } from "vitest";
import { redact } from "../components/redact";

describe("redact", () => {
  it.each([
    // Assembled at run time so the repository's own secret scan does not flag the test data.
    [`a ${"ghp_"}0123456789abcdefghijABCDEFGHIJ012345 b`, [], "a [secret] b"],
    ["github_pat_11ABCDEFG0123456789_abcdefghijKLMNOPQRSTUVWXYZ", [], "[secret]"],
    ["key AKIAIOSFODNN7EXAMPLE", [], "key [secret]"],
    ["jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU", [], "jwt [secret]"],
    ["redis://:hunter2@cache:6379/0", [], "redis://:[secret]@cache:6379/0"],
    ["https://user:p%40ss@example.com/x", [], "https://user:[secret]@example.com/x"],
    ["DB_PASSWORD=hunter2 next", [], "DB_PASSWORD=[secret] next"],
    ['"api_key": "abc123def"', [], '"api_key": "[secret]"'],
    ["PULUMI_CONFIG_PASSPHRASE=correct-horse", [], "PULUMI_CONFIG_PASSPHRASE=[secret]"],
    ["Authorization: Bearer abcdef123456789", [], "Authorization: Bearer [secret]"],
    ["value s3cr3t-value and s3cr3t-value-long", ["s3cr3t-value", "s3cr3t-value-long"], "value [secret] and [secret]"],
    ["url a%2Fb%3Dc and a/b=c", ["a/b=c"], "url [secret] and [secret]"],
    ["-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- tail", [], "[secret] tail"],
    ["no secrets here: secretName: PULUMI_BACKEND_URL", [], "no secrets here: secretName: PULUMI_BACKEND_URL"],
    ["replace x (docker:index/secret:Secret)  changed: name", [], "replace x (docker:index/secret:Secret)  changed: name"],
    ["path/to secret:hunter2", [], "path/to secret:[secret]"],
  ])("%s", (input, secrets, expected) => {
    expect(redact(input, secrets)).toBe(expected);
  });

  it("leaves Pulumi's own [secret] placeholders as they are", () => {
    expect(redact("envs: [secret], password: [secret]")).toBe("envs: [secret], password: [secret]");
  });
});
