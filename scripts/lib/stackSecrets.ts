/**
 * Pure rules for the stack secrets the helpers manage: names, the local defaults of the quick start,
 * the prod refusal, and what makes an acceptable rotated value. No processes here, so every rule is
 * tested directly.
 */
import { randomBytes } from "node:crypto";
import { ENV_NAME, PROGRAM_MANAGED_ENV } from "../../components/config/schema";
import { REQUIRED_SECRETS, type RequiredSecret } from "../../components/contract";

export { REQUIRED_SECRETS, type RequiredSecret };

/** SQLite on the container's `/data` volume: the only writable place besides tmpfs `/tmp`. */
export const LOCAL_DATABASE_URL = "sqlite:////data/app.db";

/** A strong random value: 32 bytes from the OS CSPRNG, base64url (43 characters, no padding). */
export function generateSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** The value the quick start gives an unset required secret, and how it describes it. */
export function localDefault(name: RequiredSecret): { value: string; description: string } {
  switch (name) {
    case "DATABASE_URL":
      return { value: LOCAL_DATABASE_URL, description: "SQLite on the container's /data volume" };
    case "SECRET_KEY":
      return { value: generateSecret(), description: "a generated random key (32 bytes)" };
  }
}

/** `secrets.<NAME>`: the `--path` key of one secret. */
export function secretPath(name: string): string {
  return `secrets.${name}`;
}

/** Why `name` cannot be a secret's name (the rule stack config holds), without echoing the word; undefined when it can. */
export function validateEnvVarName(name: string): string | undefined {
  if (!ENV_NAME.test(name)) {
    // The word is not echoed: a mistyped command line may have put the value where the name belongs.
    return "The name given is not an environment variable name: use letters, digits and _, not starting with a digit (e.g. SECRET_KEY).";
  }
  if ((PROGRAM_MANAGED_ENV as readonly string[]).includes(name)) {
    return `${name} is set by the program itself and cannot be a secret.`;
  }
  return undefined;
}

/** Last path segment of a stack name (`org/project/prod` -> `prod`). */
export function shortStackName(stack: string): string {
  const parts = stack.split("/");
  return parts[parts.length - 1] ?? stack;
}

/**
 * Whether a stack's name says production. The role itself is always `environment`, as the program
 * decides it; the name only stops the quick start from giving such a stack staging's role by guess.
 */
export function nameSaysProduction(stack: string): boolean {
  return /^(prod|production|prd)$/i.test(shortStackName(stack));
}

/** The quick start's refusal to guess the role of a stack whose name says production. */
export function unsetProductionRole(stack: string): string {
  return (
    `Stack ${stack} has no environment, and its name says production. The quick start does not guess a ` +
    `production stack's role; set it on purpose, then run it again:\n  pulumi config set --stack ${stack} environment prod`
  );
}

/** The exact commands that set one secret without putting its value on the command line. */
export function setSecretCommands(stack: string, name: string): string[] {
  return [
    `npm run rotate -- --stack ${stack} ${name} < file-holding-the-value`,
    `pulumi config set --secret --path '${secretPath(name)}' --stack ${stack} < file-holding-the-value`,
  ];
}

/** The refusal for a prod stack with unset secrets: each one named, with the commands that set it. */
export function prodRefusal(stack: string, missing: readonly string[], plaintext: readonly string[] = []): string {
  const lines = [`Refusing to invent secrets for production stack "${stack}".`];
  if (missing.length > 0) lines.push(`Missing: ${missing.map(secretPath).join(", ")}.`);
  if (plaintext.length > 0) lines.push(`Stored in plain text (must be --secret): ${plaintext.map(secretPath).join(", ")}.`);
  lines.push("Set each with its real value (read from stdin, so it stays out of argv and shell history):");
  for (const name of [...missing, ...plaintext]) {
    for (const cmd of setSecretCommands(stack, name)) lines.push(`  ${cmd}`);
  }
  if (missing.includes("SECRET_KEY")) {
    lines.push(`  (SECRET_KEY can be generated: npm run rotate -- --stack ${stack} SECRET_KEY --generate)`);
  }
  return lines.join("\n");
}

/**
 * Turns what arrived on stdin into the value to store, or explains why it is refused. One trailing
 * newline is dropped (what `echo` and most editors add; pulumi drops it too). Multi-line values and
 * surrounding whitespace are refused: an environment variable holding them is almost always a
 * copy-paste mistake, and pulumi versions differ in how they trim them.
 */
export function normalizeSecretInput(raw: string): { value: string } | { error: string } {
  const value = raw.endsWith("\r\n") ? raw.slice(0, -2) : raw.endsWith("\n") ? raw.slice(0, -1) : raw;
  if (value.length === 0) {
    return { error: "The new value is empty. Pipe it on stdin (e.g. `< file`) or pass --generate for a random one." };
  }
  if (/[\r\n]/.test(value)) return { error: "The new value spans several lines; an environment variable value must be one line." };
  if (value.includes("\0")) return { error: "The new value contains a NUL byte, which no environment variable can hold." };
  if (value.trim() !== value) return { error: "The new value starts or ends with whitespace; strip it and retry." };
  return { value };
}
