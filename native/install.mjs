// `npm install` runs this (package.json "install"). keyhop's native addons (ATECC608 over I2C, TPM
// 2.0, the AEAD that speeds up secure channels) are optional: every other part of keyhop works without them. So this never fails the
// install. It uses the prebuilt addons a packed keyhop ships for this platform (prebuilds/), builds
// with node-gyp what is missing when a C++ toolchain is there, and otherwise says in one line what
// is missing and how to get it. KEYHOP_BUILD_FROM_SOURCE=1 (or npm's --build-from-source) builds
// even where prebuilt addons exist.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const platform = `${process.platform}-${process.arch}`;
const prebuilt = (file) => existsSync(join(root, 'prebuilds', platform, file));
const say = (line) => process.stderr.write(`keyhop: ${line}\n`);

const fromSource =
  process.env.KEYHOP_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true';
const tss2 =
  spawnSync('pkg-config', ['--exists', 'tss2-esys', 'tss2-tctildr', 'tss2-rc', 'tss2-mu']).status === 0;
// keyhop_aead.node only speeds up secure channels (node:crypto does the same without it).
const wanted = ['keyhop_atecc608.node', 'keyhop_aead.node', ...(tss2 ? ['keyhop_tpm2.node'] : [])];
const missing = fromSource ? wanted : wanted.filter((f) => !prebuilt(f));

if (missing.length === 0) {
  say(`using the prebuilt native addons for ${platform} (prebuilds/${platform}/)`);
  process.exit(0);
}

const runs = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const cxx = process.env.CXX ? runs(process.env.CXX) : runs('c++') || runs('g++');
const tools = [
  cxx ? undefined : 'C++ compiler',
  runs('make') ? undefined : 'make',
  runs('python3') ? undefined : 'python3',
].filter(Boolean);
const hint = 'sudo apt-get install build-essential python3, then npm run build:native';
const what = prebuilt('keyhop_atecc608.node')
  ? 'the TPM 2.0 and AEAD addons'
  : 'the ATECC608 I2C, TPM 2.0 and AEAD addons (the software and PKCS#11 vaults work without them; secure channels use node:crypto)';

if (tools.length > 0) {
  say(`${what} not built: no ${tools.join(' and no ')} on this machine (${hint})`);
  process.exit(0);
}
const npmNodeGyp = process.env.npm_config_node_gyp;
const gyp = npmNodeGyp
  ? spawnSync(process.execPath, [npmNodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit', shell: false });
if (gyp.status !== 0) say(`${what} could not be built (see the node-gyp output above; ${hint})`);
process.exit(0);
