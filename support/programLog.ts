/**
 * What the program logs at info level in a test under mocks (the `tls status` and verdict lines the
 * pull-request comment reads back), caught instead of sent to the engine.
 */
import * as pulumi from "@pulumi/pulumi";
import { afterEach, beforeEach, vi } from "vitest";

/** Spies on `pulumi.log.info` in every test of the file, restored after each; returns what each test logged so far. */
export function spyOnInfoLog(): () => string[] {
  let info: ReturnType<typeof vi.spyOn> | undefined;
  beforeEach(() => {
    info = vi.spyOn(pulumi.log, "info").mockImplementation(() => Promise.resolve());
  });
  afterEach(() => info?.mockRestore());
  return () => (info?.mock.calls ?? []).map((call: unknown[]) => String(call[0]));
}
