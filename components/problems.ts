/**
 * The one format every refusal of this program uses, config errors and refused promotions alike:
 * a title that says what was not done, then each problem as zod prints it (what is wrong, and where)
 * with the command that fixes it.
 */
import { z } from "zod";

/** One problem: where it is, what is wrong, and the command that fixes it. */
export interface Problem {
  /** The key or output at fault, as path segments (`["readiness", "checkedAt"]`). */
  path: readonly PropertyKey[];
  message: string;
  fix: string;
}

/** Each problem in zod's pretty format, followed by its fix. */
export function formatProblemList(problems: readonly Problem[]): string {
  return problems
    .map((problem) => `${z.prettifyError({ issues: [{ message: problem.message, path: [...problem.path] }] })}\n    fix: ${problem.fix}`)
    .join("\n");
}

/** `<title> (<n> <noun>s); <outcome>:` and the list. */
export function formatRefusal(title: string, noun: string, outcome: string, problems: readonly Problem[]): string {
  const count = problems.length === 1 ? `1 ${noun}` : `${problems.length} ${noun}s`;
  return `${title} (${count}); ${outcome}:\n${formatProblemList(problems)}`;
}
