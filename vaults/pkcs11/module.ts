import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describeError, ErrorCodes, KeyhopError, thrownProperty } from '../../runtime/errors.js';
import { CKR, ckrName, ckrOf } from './ckr.js';
import { CKF_OS_LOCKING_OK } from './constants.js';
import type { PKCS11, Pkcs11Lib } from './pkcs11js-api.js';

/**
 * One loaded, initialised PKCS#11 module, shared by every vault of this process that names it.
 * A module is initialised once per process (C_Initialize is process-wide, and a second one answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED), and C_Finalize would end every session of every vault on it,
 * so the module is finalised only when its last vault closes. Login state is per token and per
 * process too: `users` counts this process's vaults per slot, so that only the last one logs out.
 */
export interface LoadedModule {
  readonly lib: Pkcs11Lib;
  readonly pkcs11: PKCS11;
  readonly path: string;
  refs: number;
  /** False when something else in the process had already initialised the module. */
  readonly ownsInit: boolean;
  readonly users: Map<string, number>;
}

const loaded = new Map<string, LoadedModule>();
let lib: Pkcs11Lib | undefined;

/**
 * pkcs11js is a CommonJS addon whose exports are built at run time (no static named exports, and
 * its typings declare no default export), so it is loaded with require, only when a PKCS#11
 * vault is opened: a machine without the built addon can still use every other vault.
 */
function loadLib(): Pkcs11Lib {
  if (lib) return lib;
  try {
    lib = createRequire(import.meta.url)('pkcs11js') as Pkcs11Lib;
    return lib;
  } catch (e) {
    // npm leaves out an optional dependency whose native build fails (no C++ toolchain).
    const absent = thrownProperty(e, 'code') === 'MODULE_NOT_FOUND';
    const why = absent
      ? 'pkcs11js, the optional dependency that reaches PKCS#11 modules, is not installed: npm leaves it out where it cannot build its addon'
      : `the pkcs11js addon does not load (${firstLine(e)})`;
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `${why}; install a C++ toolchain (sudo apt-get install build-essential python3) and run npm install (or npm rebuild pkcs11js) again`,
      { cause: e },
    );
  }
}

function firstLine(e: unknown): string {
  return describeError(e).split('\n')[0] ?? '';
}

/**
 * Loads and initialises the module at `path` (or takes the already loaded one). A missing or
 * unloadable file, or a module that fails C_Initialize, is HARDWARE_UNAVAILABLE naming the path.
 */
export function acquireModule(path: string): LoadedModule {
  if (path.includes('/') && !existsSync(path)) {
    throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, `PKCS#11 module ${path} does not exist`);
  }
  const key = path.includes('/') ? realpathSync(path) : path;
  const known = loaded.get(key);
  if (known) {
    known.refs++;
    return known;
  }
  const lib = loadLib();
  const pkcs11 = new lib.PKCS11();
  try {
    pkcs11.load(path);
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `cannot load PKCS#11 module ${path}: ${firstLine(e)}`,
      {
        cause: e,
      },
    );
  }
  let ownsInit = true;
  try {
    pkcs11.C_Initialize({ flags: CKF_OS_LOCKING_OK });
  } catch (e) {
    const rv = ckrOf(e);
    if (rv === CKR.CRYPTOKI_ALREADY_INITIALIZED) {
      ownsInit = false;
    } else {
      closeQuietly(pkcs11);
      const why = rv === undefined ? describeError(e) : ckrName(rv);
      throw new KeyhopError(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        `PKCS#11 module ${path} failed to initialise (${why})${initHint(path)}`,
        { cause: e },
      );
    }
  }
  const module: LoadedModule = { lib, pkcs11, path, refs: 1, ownsInit, users: new Map() };
  loaded.set(key, module);
  return module;
}

/** Drops one reference; the last one finalises and unloads the module. Never throws. */
export function releaseModule(module: LoadedModule): void {
  module.refs--;
  if (module.refs > 0) return;
  for (const [k, m] of loaded) if (m === module) loaded.delete(k);
  if (module.ownsInit) {
    try {
      module.pkcs11.C_Finalize();
    } catch {
      // already finalised by someone else: nothing left to release
    }
  }
  closeQuietly(module.pkcs11);
}

function closeQuietly(pkcs11: PKCS11): void {
  try {
    pkcs11.close();
  } catch {
    // the library was never loaded
  }
}

function initHint(path: string): string {
  if (!/softhsm/i.test(path)) return '';
  const conf = process.env.SOFTHSM2_CONF;
  return conf === undefined
    ? ': SoftHSM reads its configuration from SOFTHSM2_CONF, which is not set'
    : `: check SoftHSM's configuration SOFTHSM2_CONF=${conf} and its token directory`;
}
