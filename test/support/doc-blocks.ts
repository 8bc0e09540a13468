import { readFileSync } from 'node:fs';

/**
 * The shell blocks of a Markdown document, as a reader would type them: fenced code blocks whose
 * language is `sh`, `bash` or `shell`, in order. A block can carry one annotation on the line
 * right before its fence:
 *   <!-- doc-test: skip: <why> -->            not run (needs a Pi, real hardware, the network…)
 *   <!-- doc-test: covered by <test file> -->  run by that test instead; the file must contain every
 *                                             command of the block (so the claim cannot go stale)
 */
export interface DocBlock {
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly code: string;
  readonly skip?: string;
  readonly coveredBy?: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_-]*)\s*$/;
const ANNOTATION = /^\s*<!--\s*doc-test:\s*(skip|covered by)\s*:?\s*(.*?)\s*-->\s*$/;

export function docBlocks(file: string): DocBlock[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = FENCE.exec(lines[j]!);
      if (close && close[2]!.startsWith(fence![0]!) && close[2]!.length >= fence!.length && close[3] === '')
        break;
      body.push(lines[j]!.startsWith(indent!) ? lines[j]!.slice(indent!.length) : lines[j]!);
    }
    if (['sh', 'bash', 'shell'].includes(lang!)) {
      const note = i > 0 ? ANNOTATION.exec(lines[i - 1]!) : null;
      blocks.push({
        file,
        line: i + 1,
        code: body.join('\n'),
        ...(note?.[1] === 'skip' ? { skip: note[2]! } : {}),
        ...(note?.[1] === 'covered by' ? { coveredBy: note[2]! } : {}),
      });
    }
    i = j;
  }
  return blocks;
}

/** The commands of a block: its lines without comments, continuation lines joined. */
export function commandsOf(code: string): string[] {
  return code
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.replace(/\s+#\s.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
