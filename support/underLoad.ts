/**
 * The end-to-end suites' proof that an update loses no request: a steady load on the stack's
 * `/version` through its proxy while the update runs, and not one failed request.
 */
import { expect } from "vitest";
import { startLoad, type LoadOptions, type LoadReport } from "./load";

/**
 * Runs `work` under 20 GETs a second on `<url>/version` (which must be on loopback) and asserts that
 * not one failed and that the load was real; returns what `work` returned and what the load saw.
 * `options` adds to the load's (HTTPS: `ca`, `connectTo`; `resendReset`).
 */
export async function underLoad<T>(url: string, work: () => Promise<T>, options: Partial<LoadOptions> = {}): Promise<{ result: T; report: LoadReport }> {
  const load = startLoad(`${url}/version`, { rps: 20, maxSeconds: 300, ...options });
  let result: T;
  try {
    result = await work();
  } finally {
    // A moment after the update, so the last requests on the old release are counted too.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const report = await load.stop();
  expect(report.failed, JSON.stringify(report.failed.slice(0, 5))).toEqual([]);
  expect(report.sent).toBeGreaterThan(20);
  return { result, report };
}
