/**
 * The shell blocks of README.md, docs/cli.md and the examples' READMEs run as written (each
 * document's blocks in one bash session, `set -euo pipefail`, in the checkout, against a fresh
 * KEYHOP_HOME), so the documentation cannot drift from what keyhop does. Blocks that need what a
 * test machine does not have are annotated `<!-- doc-test: skip: why -->`; blocks another test
 * runs are annotated `<!-- doc-test: covered by <file> -->`, and that file must contain their
 * commands. Three commands are stood in for: `keyhop` and `npx keyhop` run this checkout's
 * dist/ (what `npx keyhop` resolves to here, without npm's start-up time), and `npm install` /
 * `npm ci` do nothing (the suite runs in an installed checkout; test/integration/
 * install-no-compiler.test.ts installs it for real).
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyhop } from '../support/cli.js';
import { commandsOf, type DocBlock, docBlocks } from '../support/doc-blocks.js';

const root = join(import.meta.dirname, '../..');
const main = join(root, 'dist/runtime/cli/main.js');
const DOCS = [
  'README.md',
  'docs/cli.md',
  ...readdirSync(join(root, 'examples'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'README.md')))
    .map((d) => `examples/${d.name}/README.md`),
];

let work: string;
let bin: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kh-docs-'));
  bin = join(work, 'bin');
  const script = (name: string, body: string) => {
    const path = join(bin, name);
    writeFileSync(path, `#!/usr/bin/env bash\n${body}\n`);
    chmodSync(path, 0o755);
  };
  mkdirSync(bin, { recursive: true });
  const realNpx = whichOutside('npx');
  const realNpm = whichOutside('npm');
  script('keyhop', `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(main)} "$@"`);
  script(
    'npx',
    `if [ "$1" = keyhop ]; then shift; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(main)} "$@"; fi\nexec ${realNpx} "$@"`,
  );
  script(
    'npm',
    `if { [ "$1" = install ] || [ "$1" = ci ]; } && [ $# -eq 1 ]; then echo "doc-test: npm $1 skipped (this checkout is installed)"; exit 0; fi\nexec ${realNpm} "$@"`,
  );
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

function whichOutside(cmd: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  throw new Error(`${cmd} not on PATH`);
}

/** Runs `script` in bash in its own process group; kills what it left behind afterwards. */
function runScript(
  script: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], {
      cwd: root,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => {
      output += `\n[doc-test: killed after ${timeoutMs} ms]`;
      process.kill(-child.pid!, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      // Background processes a block started (an emulator, a web server) go with the group.
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // the group is gone already
      }
      resolve({ code, output });
    });
  });
}

describe.each(DOCS)('the shell blocks of %s run as written', (doc) => {
  const blocks = docBlocks(join(root, doc));
  const runnable = blocks.filter((b) => b.skip === undefined && b.coveredBy === undefined);

  it('every block is run here, skipped for a stated reason, or run by a named test that contains its commands', () => {
    for (const b of blocks) {
      if (b.skip !== undefined)
        expect(b.skip.length, `${doc}:${b.line} skip needs a reason`).toBeGreaterThan(5);
      if (b.coveredBy !== undefined) {
        const test = readFileSync(join(root, b.coveredBy), 'utf8');
        for (const command of commandsOf(b.code)) {
          if (/^npm (install|ci)$/.test(command)) continue;
          const script = command.replace(/^node /, '');
          expect(test, `${doc}:${b.line}: ${b.coveredBy} does not run "${command}"`).toContain(script);
        }
      }
    }
  });

  // A document whose blocks all run elsewhere or need other machines has nothing more to run here.
  if (runnable.length === 0) return;
  it(`runs ${runnable.length} block(s)`, async () => {
    const home = mkdtempSync(join(work, 'home-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KEYHOP_HOME: home,
      PATH: `${bin}:${process.env.PATH ?? ''}`,
    };
    delete env.KEYHOP_VAULT_PASSPHRASE;
    const script = [
      'set -euo pipefail',
      ...runnable.map((b: DocBlock) => `echo "### ${relative(root, b.file)}:${b.line}"\n${b.code}`),
    ].join('\n');
    try {
      const r = await runScript(script, env, 150_000);
      expect(r.code, r.output.slice(-6000)).toBe(0);
    } finally {
      const list = await keyhop(home, ['node', 'list', '--json']);
      for (const n of JSON.parse(list.stdout || '[]') as { name: string; status: string }[]) {
        if (n.status === 'running') await keyhop(home, ['node', 'stop', n.name]);
      }
    }
  }, 180_000);
});
