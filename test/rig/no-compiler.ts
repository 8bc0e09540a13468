import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

/**
 * A machine without a C/C++ toolchain, as a fresh Raspberry Pi OS Lite or a slim container is:
 * a directory of links to every program on PATH except compilers, linkers, assemblers and build
 * tools. Run npm with PATH set to it and node-gyp, cmake-js and every native dependency find no
 * compiler, exactly as on such a machine (python3 stays: Pi OS Lite has it).
 */
const TOOLCHAIN =
  /^(gcc|g\+\+|cc|c\+\+|cpp|clang|clang\+\+|clang-cpp|make|gmake|cmake|ninja|ld|ld\..*|as|gold|lld)(-[0-9.]+)?$|^[a-z0-9_]+-linux-gnu[a-z]*-(gcc|g\+\+|cc|c\+\+|cpp|ld|ld\..*|as)(-[0-9.]+)?$/;

export function isToolchainProgram(name: string): boolean {
  return TOOLCHAIN.test(name);
}

/** Fills `dir` with links to the programs on `path` minus the toolchain; returns `dir` (a PATH). */
export function noCompilerPath(dir: string, path = process.env.PATH ?? ''): string {
  mkdirSync(dir, { recursive: true });
  for (const from of path.split(delimiter)) {
    if (from === '' || !existsSync(from)) continue;
    let names: string[];
    try {
      names = readdirSync(from);
    } catch {
      continue;
    }
    for (const name of names) {
      if (isToolchainProgram(name) || existsSync(join(dir, name))) continue;
      const target = join(from, name);
      try {
        if (!statSync(target).isFile()) continue;
        symlinkSync(target, join(dir, name));
      } catch {
        // dangling link or a name taken by an earlier PATH entry
      }
    }
  }
  return dir;
}

/**
 * The environment of a user's shell: PATH without a toolchain, and none of the npm_* variables
 * that `npm test` passes down (a nested npm would take them as its own configuration).
 */
export function userEnv(path: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') && k !== 'INIT_CWD') env[k] = v;
  }
  return {
    ...env,
    PATH: path,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ...extra,
  };
}

/** Copies what a clone of the checkout would hold (tracked and new, not ignored, files) to `dest`. */
export function stageCheckout(root: string, dest: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
    .split('\0')
    .filter((f) => f !== '');
  for (const f of files) {
    const from = join(root, f);
    if (!existsSync(from) || !statSync(from).isFile()) continue; // deleted in the working tree
    mkdirSync(dirname(join(dest, f)), { recursive: true });
    copyFileSync(from, join(dest, f));
  }
}
