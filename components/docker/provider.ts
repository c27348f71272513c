/** How the Docker provider (`@pulumi/docker`) wants values spelled, so that a preview shows no diff. */

/**
 * `cpus` spelled the way the Docker provider reads it back from the engine: whole numbers with one
 * decimal ("1.0"), others as they are ("0.5"). Any other spelling is a diff on every preview, and a
 * diff of `cpus` replaces the container.
 */
export function dockerCpus(cpus: number): string {
  return Number.isInteger(cpus) ? cpus.toFixed(1) : String(cpus);
}
