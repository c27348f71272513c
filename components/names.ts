/**
 * Two judgements about names that the program and the policy pack (policy/) share, in a module
 * with no dependencies so the pack loads nothing else: whether a variable name looks like it holds a
 * credential, and whether a user string names root.
 */

/** A variable name that looks like it holds a credential and so belongs in `secrets`. */
export function looksSecret(name: string): boolean {
  return /PASSWORD|SECRET|TOKEN|KEY/i.test(name) || name.toUpperCase() === "DATABASE_URL";
}

/** Whether a user string from `docker inspect` names root (or nobody at all). */
export function isRootUser(user: string): boolean {
  const name = user.split(":")[0]?.trim() ?? "";
  return name === "" || name === "root" || name === "0";
}
