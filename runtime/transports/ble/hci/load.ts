/**
 * Lazy loading of the optional BLE stacks. noble and bleno are optionalDependencies: a missing
 * package must surface as a KeyhopError when BLE is used, never as a crash at import time.
 *
 * We load their HCI internals (lib/hci-socket/bindings.js) rather than the packages' entry
 * points: the entries build one process-wide instance bound to one adapter, while we need one
 * stack per UART (several centrals and peripherals in one process).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorCodes, KeyhopError } from '../../../errors.js';
import type {
  BlenoBindings,
  BlenoBindingsClass,
  HciSocketClass,
  NobleBindingsClass,
  NobleClass,
} from './stack-types.js';

export interface NobleStack {
  readonly Noble: NobleClass;
  readonly Bindings: NobleBindingsClass;
  readonly UartSocket: HciSocketClass;
}

export interface BlenoStack {
  readonly Bindings: BlenoBindingsClass;
  readonly UartSocket: HciSocketClass;
}

const HCI_SOCKET = '@abandonware/bluetooth-hci-socket';

let noble: Promise<NobleStack> | undefined;
let bleno: Promise<BlenoStack> | undefined;

export function loadNoble(): Promise<NobleStack> {
  noble ??= loadNobleOnce().catch((e: unknown) => {
    noble = undefined;
    throw e;
  });
  return noble;
}

export function loadBleno(): Promise<BlenoStack> {
  bleno ??= loadBlenoOnce().catch((e: unknown) => {
    bleno = undefined;
    throw e;
  });
  return bleno;
}

async function loadNobleOnce(): Promise<NobleStack> {
  const entry = resolvePackage('@abandonware/noble', 'central');
  const dir = dirname(entry);
  const Noble = await importDefault<NobleClass>(join(dir, 'lib', 'noble.js'));
  const Bindings = await importDefault<NobleBindingsClass>(join(dir, 'lib', 'hci-socket', 'bindings.js'));
  return { Noble, Bindings, UartSocket: await loadUartDriver(entry) };
}

async function loadBlenoOnce(): Promise<BlenoStack> {
  const entry = resolvePackage('@abandonware/bleno', 'peripheral');
  // bleno's module exports a ready-made instance; its class builds independent ones.
  const shared = await importDefault<BlenoBindings>(join(dirname(entry), 'lib', 'hci-socket', 'bindings.js'));
  const Bindings = shared.constructor as BlenoBindingsClass;
  return { Bindings, UartSocket: await loadUartDriver(entry) };
}

/** The UART driver of the HCI socket package that this noble/bleno copy itself requires. */
async function loadUartDriver(fromEntry: string): Promise<HciSocketClass> {
  let path: string;
  try {
    path = createRequire(fromEntry).resolve(HCI_SOCKET);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `BLE: ${HCI_SOCKET} is not installed`, { cause: e });
  }
  const mod = await importDefault<{ loadDriver?: (type: string) => HciSocketClass }>(path);
  if (typeof mod.loadDriver !== 'function') {
    throw new KeyhopError(
      ErrorCodes.UNSUPPORTED,
      `BLE over a UART needs ${HCI_SOCKET} to be the @stoprocent/bluetooth-hci-socket fork (npm overrides in package.json); the installed one has no UART driver`,
    );
  }
  return mod.loadDriver('uart');
}

function resolvePackage(name: string, role: string): string {
  try {
    return createRequire(import.meta.url).resolve(name);
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.UNSUPPORTED,
      `BLE ${role} needs the optional package ${name}, which is not installed (npm install ${name})`,
      { cause: e },
    );
  }
}

async function importDefault<T>(path: string): Promise<T> {
  try {
    const mod = (await import(pathToFileURL(path).href)) as { default: T };
    return mod.default;
  } catch (e) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `BLE: cannot load ${path}: ${String(e)}`, { cause: e });
  }
}
