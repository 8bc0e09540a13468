// `npm pack` / `npm publish` run this (package.json "prepack"): builds the native addons and puts
// them in prebuilds/<platform>-<arch>/, which the package ships, so that installing the packed
// keyhop needs no compiler (native/install.mjs uses them; vaults/native-addon.ts loads them).
// Node-API addons: one binary per platform and architecture serves every Node >= 20.
// - this machine's platform: node-gyp (both addons; the TPM one only where tpm2-tss is installed);
// - linux-arm64 (64-bit Raspberry Pi OS), when g++-aarch64-linux-gnu is installed: the ATECC608
//   addon through cmake-js and native/toolchains/ (the TPM addon would need arm64 tpm2-tss).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
};
const copy = (fromDir, platform, files) => {
  const to = join(root, 'prebuilds', platform);
  mkdirSync(to, { recursive: true });
  for (const f of files) {
    const from = join(root, fromDir, f);
    if (!existsSync(from)) continue;
    copyFileSync(from, join(to, f));
    process.stderr.write(`prebuilds/${platform}/${f}\n`);
  }
};

rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
run('npm', ['run', '--silent', 'build:native']);
copy('build/Release', `${process.platform}-${process.arch}`, [
  'keyhop_atecc608.node',
  'keyhop_tpm2.node',
  'keyhop_aead.node',
]);
const cross = spawnSync('aarch64-linux-gnu-g++', ['--version'], { stdio: 'ignore' }).status === 0;
if (process.platform === 'linux' && process.arch !== 'arm64' && cross) {
  run('npm', ['run', '--silent', 'build:native:arm64']);
  copy('build-arm64/Release', 'linux-arm64', ['keyhop_atecc608.node']);
} else if (process.arch !== 'arm64') {
  process.stderr.write('keyhop: no g++-aarch64-linux-gnu: the package ships no linux-arm64 addon\n');
}
