import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProgram, cliReference, commandsOf } from './program.js';
import { REFERENCE_BEGIN, REFERENCE_END, withReference } from './write-reference.js';

const doc = readFileSync(join(import.meta.dirname, '../../docs/cli.md'), 'utf8');
const program = buildProgram();

describe('docs/cli.md and --help cannot disagree', () => {
  it('holds the command reference made from the commands (npm run docs:cli writes it)', () => {
    expect(doc).toContain(REFERENCE_BEGIN);
    expect(withReference(doc, cliReference(program))).toBe(doc);
  });

  it('mentions only options that exist, each on a command that has it', () => {
    // Outside the reference and outside code blocks (those run in docs.test.ts, and name other
    // programs' options too).
    const prose = (
      doc.slice(0, doc.indexOf(REFERENCE_BEGIN)) + doc.slice(doc.indexOf(REFERENCE_END))
    ).replace(/^```[\s\S]*?^```$/gm, '');
    const all = new Set<string>();
    for (const { command } of commandsOf(program)) for (const o of command.options) all.add(o.long ?? '');
    for (const o of program.options) all.add(o.long ?? '');
    const mentioned = new Set(prose.match(/(?<![\w-])--[a-z][a-z0-9-]+/g) ?? []);
    const unknown = [...mentioned].filter((f) => !all.has(f) && !['--help', '--version'].includes(f));
    expect(unknown).toEqual([]);
    // A table row `keyhop <command> …` names only options of that command.
    for (const line of prose.split('\n').filter((l) => l.startsWith('| `keyhop '))) {
      const cell = /^\| `keyhop ([^`]*)`/.exec(line)?.[1] ?? '';
      const found = commandsOf(program)
        .filter(({ path }) => `${cell} `.startsWith(`${path.slice('keyhop '.length)} `))
        .sort((a, b) => b.path.length - a.path.length)[0];
      expect(found, line).toBeDefined();
      const own = new Set([...found!.command.options, ...program.options].map((o) => o.long));
      for (const flag of cell.match(/--[a-z][a-z0-9-]+/g) ?? [])
        expect(own.has(flag), `${found!.path}: ${flag}`).toBe(true);
    }
  });

  it('documents every command', () => {
    for (const { path } of commandsOf(program)) expect(doc, path).toContain(`\`${path}`);
  });
});
