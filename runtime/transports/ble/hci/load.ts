/**
 * Lazy loading of the optional BLE stacks. noble and bleno are optionalDependencies: a missing
 * package must surface as a KeyhopError when BLE is used, never as a crash at import time.
 *
 * We load their HCI internals (lib/hci-socket/bindings.js) rather than the packages' entry
 * points: the entries build one process-wide instance bound to one adapter, while we need one
 * stack per controller (several centrals and peripherals in one process).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeError, ErrorCodes, KeyhopError } from '../../../errors.js';
import type {
  BlenoBindings,
  BlenoBindingsClass,
  HciSocketClass,
  NativeHciSocketClass,
  NobleBindingsClass,
  NobleClass,
} from './stack-types.js';

/** The drivers of the HCI socket package that a noble or bleno copy itself requires. */
export interface HciDrivers {
  /** For a controller on a UART (lib/uart.js). */
  readonly UartSocket: HciSocketClass;
  /**
   * For a kernel adapter (lib/native.js, an N-API addon): loaded on first call, so that a
   * platform without a prebuilt addon still has UARTs. Throws UNSUPPORTED when it does not load.
   */
  readonly nativeSocket: () => NativeHciSocketClass;
}

export interface NobleStack extends HciDrivers {
  readonly Noble: NobleClass;
  readonly Bindings: NobleBindingsClass;
}

export interface BlenoStack extends HciDrivers {
  readonly Bindings: BlenoBindingsClass;
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
  // Before the stack's own modules, which require the socket package too.
  const drivers = loadDrivers(entry);
  const dir = dirname(entry);
  const Noble = await importDefault<NobleClass>(join(dir, 'lib', 'noble.js'));
  const Bindings = await importDefault<NobleBindingsClass>(join(dir, 'lib', 'hci-socket', 'bindings.js'));
  return { Noble, Bindings, ...drivers };
}

async function loadBlenoOnce(): Promise<BlenoStack> {
  const entry = resolvePackage('@abandonware/bleno', 'peripheral');
  const drivers = loadDrivers(entry);
  // bleno's module exports a ready-made instance; its class builds independent ones.
  const shared = await importDefault<BlenoBindings>(join(dirname(entry), 'lib', 'hci-socket', 'bindings.js'));
  const Bindings = shared.constructor as BlenoBindingsClass;
  return { Bindings, ...drivers };
}

interface SocketPackage {
  loadDriver?: (type: 'uart' | 'native') => unknown;
}

/**
 * The drivers of the HCI socket package that this noble/bleno copy itself requires.
 *
 * The package picks a default driver when it is first loaded, and the stacks' modules build
 * sockets of that default at load time: bleno's lib/hci-socket/mgmt.js even binds and starts
 * one, process-wide (a BlueZ management socket for LE keys, which keyhop never uses). On Linux
 * the default is the native driver, whose reader thread would keep the process alive for good
 * wherever AF_BLUETOOTH exists (any Raspberry Pi). Loading the package first with
 * BLUETOOTH_HCI_SOCKET_FORCE_UART set makes the default the UART driver, whose sockets do
 * nothing until bound. Every socket keyhop drives is made from an explicit driver.
 */
function loadDrivers(fromEntry: string): HciDrivers {
  const require = createRequire(fromEntry);
  let mod: SocketPackage;
  try {
    require.resolve(HCI_SOCKET);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `BLE: ${HCI_SOCKET} is not installed; ${REINSTALL}`, {
      cause: e,
    });
  }
  try {
    mod = withEnv('BLUETOOTH_HCI_SOCKET_FORCE_UART', '1', () => require(HCI_SOCKET) as SocketPackage);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `BLE: cannot load ${HCI_SOCKET}: ${describeError(e)}`, {
      cause: e,
    });
  }
  const loadDriver = mod.loadDriver;
  if (typeof loadDriver !== 'function') {
    throw new KeyhopError(
      ErrorCodes.UNSUPPORTED,
      `BLE needs ${HCI_SOCKET} to be the @stoprocent/bluetooth-hci-socket fork (npm overrides in package.json); the installed one has no UART driver`,
    );
  }
  let native: NativeHciSocketClass | undefined;
  return {
    UartSocket: loadDriver('uart') as HciSocketClass,
    nativeSocket: () => {
      try {
        native ??= loadDriver('native') as NativeHciSocketClass;
        return native;
      } catch (e) {
        throw new KeyhopError(
          ErrorCodes.UNSUPPORTED,
          `BLE on a kernel adapter needs the native addon of ${HCI_SOCKET}, which does not load here (${describeError(e)}); a controller with HCI UART firmware works without it`,
          { cause: e },
        );
      }
    },
  };
}

function withEnv<T>(name: string, value: string, fn: () => T): T {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

/** Why an optional BLE package can be missing, and what brings it. */
const REINSTALL =
  'npm leaves optional packages out where their addon cannot build: install a C++ toolchain (sudo apt-get install build-essential python3) and run npm install again';

function resolvePackage(name: string, role: string): string {
  try {
    return createRequire(import.meta.url).resolve(name);
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.UNSUPPORTED,
      `BLE ${role} needs the optional package ${name}, which is not installed; ${REINSTALL}`,
      { cause: e },
    );
  }
}

async function importDefault<T>(path: string): Promise<T> {
  try {
    const mod = (await import(pathToFileURL(path).href)) as { default: T };
    return mod.default;
  } catch (e) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `BLE: cannot load ${path}: ${describeError(e)}`, {
      cause: e,
    });
  }
}
