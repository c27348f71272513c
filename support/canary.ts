/**
 * Canary credentials for tests. A database URL is assembled at run time so that the repository
 * holds no literal credential-shaped string: the secret scan runs over the whole tree with zero
 * findings, and a real leak would stand out.
 */

/** A database URL whose password is the given canary, built as scheme, `app`, the canary, host and database name. */
export function canaryDatabaseUrl(password: string, scheme = "postgresql", host = "db.internal:5432", database = "app"): string {
  return `${scheme}://app:${password}@${host}/${database}`;
}
