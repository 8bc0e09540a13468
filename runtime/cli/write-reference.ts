import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../vaults/native-addon.js';
import { buildProgram, cliReference } from './program.js';

/** `npm run docs:cli`: rewrites the command reference of docs/cli.md from the commands themselves. */
export const REFERENCE_BEGIN =
  '<!-- reference:begin (made by `npm run docs:cli` from the commands themselves; edit the commands, not this) -->';
export const REFERENCE_END = '<!-- reference:end -->';

/** docs/cli.md with its reference section replaced by `reference`. */
export function withReference(doc: string, reference: string): string {
  const begin = doc.indexOf(REFERENCE_BEGIN);
  const end = doc.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin) throw new Error('docs/cli.md has no reference markers');
  return `${doc.slice(0, begin + REFERENCE_BEGIN.length)}\n\n${reference.trim()}\n\n${doc.slice(end)}`;
}

if (process.argv[1]?.endsWith('write-reference.js')) {
  const path = join(packageRoot(), 'docs', 'cli.md');
  writeFileSync(path, withReference(readFileSync(path, 'utf8'), cliReference(buildProgram())));
  process.stdout.write(`${path}: reference written\n`);
}
