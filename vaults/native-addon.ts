import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError, ErrorCodes, KeyhopError } from '../runtime/errors.js';

/**
 * Loading keyhop's native addons (`build/Release/*.node`, built by binding.gyp or cmake-js, or the
 * prebuilt ones of a packed keyhop in `prebuilds/`): one place for where they are found, the
 * environment variable that points at another build, and the HARDWARE_UNAVAILABLE error that says
 * how to build one.
 */
export interface NativeAddonSpec {
  /** File name in build/Release, e.g. `keyhop_tpm2.node`. */
  readonly file: string;
  /** Environment variable naming the file explicitly (a cmake-js build, a cross-built copy). */
  readonly env: string;
  /** For messages: `the TPM 2.0 addon`. */
  readonly what: string;
  /** How to build it, for the error when it is missing or does not load. */
  readonly howToBuild: string;
  /** A function the addon must export, to tell it from another file. */
  readonly entry: string;
}

let packageRootCache: string | undefined;

/** The directory of keyhop's package.json (works from the sources and from dist/). */
export function packageRoot(): string {
  if (packageRootCache !== undefined) return packageRootCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'keyhop') {
          packageRootCache = dir;
          return dir;
        }
      } catch {
        // not ours; keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json of keyhop not found above vaults/');
    dir = up;
  }
}

/** `prebuilds/<platform>-<arch>/`: where a packed keyhop ships addons built for that platform. */
export function prebuildDir(): string {
  return join(packageRoot(), 'prebuilds', `${process.platform}-${process.arch}`);
}

/**
 * Where the addon is loaded from: `$<env>` when set; else `build/Release/<file>` (built on this
 * machine by `npm install` or `npm run build:native`); else the prebuilt one shipped for this
 * platform in `prebuilds/<platform>-<arch>/<file>` (Node-API, so one binary serves every Node ≥ 20).
 * When none exists, the build path (what the error names).
 */
export function nativeAddonPath(spec: NativeAddonSpec): string {
  const explicit = process.env[spec.env];
  if (explicit !== undefined && explicit !== '') return resolve(explicit);
  const built = join(packageRoot(), 'build', 'Release', spec.file);
  if (existsSync(built)) return built;
  const prebuilt = join(prebuildDir(), spec.file);
  return existsSync(prebuilt) ? prebuilt : built;
}

const cache = new Map<string, unknown>();

/** Loads (once per path) and returns the addon, or throws HARDWARE_UNAVAILABLE saying how to build it. */
export function loadNativeAddon<T>(spec: NativeAddonSpec): T {
  const path = nativeAddonPath(spec);
  const cached = cache.get(path);
  if (cached !== undefined) return cached as T;
  if (!existsSync(path)) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `${spec.what} is not built (${path} is missing, and no prebuilt one for ${process.platform}-${process.arch} ships in ${prebuildDir()}): ${spec.howToBuild}`,
    );
  }
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `${spec.what} ${path} does not load (${describeError(e)}); rebuild it: ${spec.howToBuild}`,
      { cause: e },
    );
  }
  if (typeof (loaded as Record<string, unknown> | null)?.[spec.entry] !== 'function') {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `${path} is not keyhop's ${spec.what}: ${spec.howToBuild}`,
    );
  }
  cache.set(path, loaded);
  return loaded as T;
}
