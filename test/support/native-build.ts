import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../vaults/native-addon.js';

/**
 * The sources an addon target builds, as binding.gyp (node-gyp) and native/CMakeLists.txt
 * (cmake-js) list them, both relative to the package root: the two builds must compile the same.
 */
export function addonSources(target: string, cmakeVariable: string): { gyp: string[]; cmake: string[] } {
  const root = packageRoot();
  const gypText = readFileSync(join(root, 'binding.gyp'), 'utf8');
  const from = gypText.indexOf(`"target_name": "${target}"`);
  const block = from < 0 ? '' : gypText.slice(from);
  const gyp = [...(/"sources":\s*\[([^\]]*)\]/.exec(block)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map(
    (m) => m[1]!,
  );
  const cmakeText = readFileSync(join(root, 'native', 'CMakeLists.txt'), 'utf8');
  const cmake = (new RegExp(`set\\(${cmakeVariable}([^)]*)\\)`).exec(cmakeText)?.[1] ?? '')
    .split(/\s+/)
    .filter((s) => s !== '')
    .map((s) => `native/${s}`);
  return { gyp: gyp.sort(), cmake: cmake.sort() };
}
