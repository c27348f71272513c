/**
 * The pull-request comment in parts: GitHub caps a comment body, so a long comment is split at line
 * boundaries into numbered parts, each with the hidden marker the poster finds its own comments by.
 * Pure: no I/O.
 */

/** First line of every part: how the poster finds its own comments again. */
export const MARKER = "<!-- backend-delivery:preview -->";
/** GitHub's limit on a comment body. */
export const GITHUB_COMMENT_LIMIT = 65_536;

/** The hidden and visible header of part `index` of `total`. */
export function partHeader(index: number, total: number): string {
  const title = total > 1 ? `## Pulumi preview (part ${index}/${total})` : "## Pulumi preview";
  return `${MARKER}\n<!-- backend-delivery:preview part ${index}/${total} -->\n${title}\n\n`;
}

/** Reads the part number a comment body carries (1 for a body with the marker but no part line). */
export function partOf(body: string): number | undefined {
  if (!body.startsWith(MARKER)) return undefined;
  const m = /<!-- backend-delivery:preview part (\d+)\/\d+ -->/.exec(body);
  return m ? Number(m[1]) : 1;
}

/**
 * Splits Markdown at line boundaries into chunks of at most `budget` characters. A chunk that ends
 * inside a code fence or `<details>` closes it, and the next chunk reopens it, so each part renders
 * on its own. A line longer than the budget is cut.
 */
export function splitMarkdown(text: string, budget: number): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 0;
  let fence: string | undefined;
  let details = 0;
  const reopen = () => {
    const lines: string[] = [];
    for (let i = 0; i < details; i++) lines.push("<details>", "<summary>(continued)</summary>", "");
    if (fence) lines.push(`${fence}text`);
    return lines;
  };
  // Size of a chunk that holds only what reopens the previous one's blocks.
  let baseSize = 0;
  const flush = () => {
    const closing = [...(fence ? [fence] : []), ...Array<string>(details).fill("</details>")];
    chunks.push([...current, ...closing].join("\n") + "\n");
    current = reopen();
    size = current.reduce((n, l) => n + l.length + 1, 0);
    baseSize = size;
  };
  // Leaves room for the closers and reopeners of a cut inside nested blocks.
  const maxLine = budget >= 400 ? budget - 200 : Math.max(1, Math.floor(budget / 2));
  const lines = text.split("\n").flatMap((l) => {
    const pieces: string[] = [];
    for (let i = 0; i < l.length || i === 0; i += maxLine) pieces.push(l.slice(i, i + maxLine));
    return pieces;
  });
  for (const line of lines) {
    // State after this line, to reserve room for what would close it.
    const fenceMatch = /^(`{3,})/.exec(line);
    let nextFence = fence;
    let nextDetails = details;
    if (fence) {
      if (line === fence) nextFence = undefined;
    } else if (fenceMatch) {
      nextFence = fenceMatch[1];
    } else if (line === "<details>") nextDetails++;
    else if (line === "</details>") nextDetails = Math.max(0, nextDetails - 1);
    const closeAfter = (nextFence ? nextFence.length + 1 : 0) + nextDetails * "</details>\n".length;
    if (size + line.length + 1 + closeAfter > budget && size > baseSize) {
      flush();
    }
    current.push(line);
    size += line.length + 1;
    fence = nextFence;
    details = nextDetails;
  }
  if (current.some((l) => l.trim() !== "")) chunks.push(current.join("\n").trimEnd() + "\n");
  return chunks;
}
