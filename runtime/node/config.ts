import { ErrorCodes, KeyhopError } from '../errors.js';
import { type HciSelection, parseHciSetting } from '../transports/ble/hci/target.js';

export interface TcpListenerConfig {
  /** `host:port` to bind; port 0 picks a free one. */
  address: string;
  /** Local workers that peers of this listener may reach; default: every service of the node. */
  expose?: string[];
}

export interface UdpBindConfig {
  /** `host:port` for the node's one UDP socket; port 0 picks a free one. */
  bind: string;
  /** Local workers that peers may reach over UDP; default: every service of the node. */
  expose?: string[];
}

export interface RelayConfig {
  /** Route to the node that hosts the relay service, e.g. `1#relay.example:4000`. */
  at: string;
  /** Stable name (`forward_to_<alias>`); without it the relay gets a random name. */
  alias?: string;
  /** Local workers reachable through the relay; default: every service of the node. */
  expose?: string[];
  /** A local worker relayed messages pass through (a gateway's device forwarder); not in config files. */
  via?: string;
}

export interface SerialConfig {
  /** The serial device, e.g. `/dev/serial0` or `/dev/ttyUSB0`. */
  path: string;
  /** Default 115200. */
  baudRate?: number;
  /** Link-layer reliability (both ends must agree). Default false. */
  reliable?: boolean;
  /**
   * What messages from the port may reach: local workers, or `1#host:port` to let them go on to
   * that TCP peer (a gateway). Default: every service and the secure-channel listener.
   */
  expose?: string[];
}

export interface BleConfig {
  /**
   * The HCI controller: a kernel adapter (`hci0`, taken over from BlueZ, which must have it
   * powered off: docs/boards/raspberry-pi.md), or the path of a controller with HCI UART firmware
   * (e.g. `/dev/ttyACM0`, or a btvirt PTY).
   */
  hci: string;
  /** HCI UART only; default 1000000. */
  baudRate?: number;
  /** `central`: a gateway that scans, dials and pairs; `peripheral`: a device that advertises. */
  role: 'central' | 'peripheral';
  /** Peripheral: the advertised name (default: the node name). */
  name?: string;
  /** GATT profile: keyhop's own service (default) or the Nordic UART Service. */
  profile?: 'keyhop' | 'nus';
  /** Peripheral: workers centrals may reach over BLE (default: the secure-channel listener). */
  expose?: string[];
  /** Central: route to the relay node where paired devices get their relays (default: this node's relay service). */
  relayAt?: string;
  /** Peripheral: largest ATT MTU agreed to (default 256). */
  maxMtu?: number;
}

export interface SecureChannelConfig {
  /** Run a secure-channel listener (default true). */
  listener: boolean;
  /** Its address (Ockam's default `api`). */
  address: string;
  /** Workers reachable through channels of this listener; default: every service and outlet. */
  expose?: string[];
  /** Accept only these peer identifiers. */
  trustedIdentifiers?: string[];
  /** Accept only peers with a credential from one of `authorities` satisfying this ABAC policy. */
  policy?: string;
  /** Trusted credential authorities: identity names in KEYHOP_HOME or change histories (hex). */
  authorities: string[];
}

export interface OutletConfig {
  /** Local worker address of the outlet (default `outlet`). */
  address?: string;
  /** `host:port` every portal connection goes to. */
  target: string;
  /** ABAC policy a secure-channel peer must satisfy to use it. */
  policy?: string;
}

export interface InletConfig {
  /** `host:port` to listen on. */
  bind: string;
  /** Route to the outlet's node secure-channel listener (e.g. `1#relay:4000 => forward_to_b => api`). */
  to: string;
  /** Outlet address on that node (default `outlet`). */
  outlet?: string;
  /** false: `to` is the whole route to the outlet and no secure channel is made (not recommended). */
  secure?: boolean;
  /** Accept only these identifiers as the outlet's node (strongly recommended: without it any node answering at `to` is believed). */
  authorized?: string[];
}

export interface NodeConfig {
  name: string;
  tcpListeners: TcpListenerConfig[];
  /** At most one UDP socket per node (a UDP transport owns one socket). */
  udp?: UdpBindConfig;
  services: { echo: boolean; relay: boolean };
  relays: RelayConfig[];
  /** Identity name in KEYHOP_HOME (created on first start); null: a fresh identity in memory. */
  identity?: string | null;
  secureChannel?: SecureChannelConfig;
  outlets?: OutletConfig[];
  inlets?: InletConfig[];
  ble?: BleConfig;
  serial?: SerialConfig[];
  log: { level: string };
}

export const NODE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function fail(message: string): never {
  throw new KeyhopError(ErrorCodes.CONFIG_INVALID, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(v: unknown, where: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.length > 0)) {
    fail(`${where} must be a list of addresses`);
  }
  return v as string[];
}

/** A list of Ockam identifiers (`I` + 64 hex digits): a typo must not become "trust no one" quietly. */
function identifierList(v: unknown, where: string): string[] | undefined {
  const list = stringList(v, where);
  for (const id of list ?? []) {
    if (!IDENTIFIER.test(id)) fail(`${where}: "${id}" is not an identifier (I followed by 64 hex digits)`);
  }
  return list?.map((id) => id.toLowerCase().replace(/^i/, 'I'));
}

const IDENTIFIER = /^I[0-9a-f]{64}$/i;

function onlyKeys(o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${where}: unknown setting "${k}"`);
}

function listOf<T>(v: unknown, where: string, item: (o: Record<string, unknown>, where: string) => T): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(`${where} must be a list`);
  return v.map((o, i) => {
    if (!isObject(o)) fail(`${where}[${i}] must be an object`);
    return item(o, `${where}[${i}]`);
  });
}

/** Validates a parsed config file (plus defaults). Unknown keys are errors: typos must not pass silently. */
export function parseNodeConfig(raw: unknown, defaults: { name?: string } = {}): NodeConfig {
  if (!isObject(raw)) fail('node config must be a JSON object');
  onlyKeys(
    raw,
    [
      'name',
      'tcpListeners',
      'udp',
      'services',
      'relays',
      'identity',
      'secureChannel',
      'outlets',
      'inlets',
      'ble',
      'serial',
      'log',
    ],
    'node config',
  );
  const name = raw.name ?? defaults.name;
  if (typeof name !== 'string' || !NODE_NAME.test(name)) {
    fail(`node name must be 1-64 letters, digits, '-' or '_' (got ${JSON.stringify(name)})`);
  }
  const listeners = raw.tcpListeners ?? [];
  if (!Array.isArray(listeners)) fail('tcpListeners must be a list');
  const tcpListeners = listeners.map((l, i): TcpListenerConfig => {
    const where = `tcpListeners[${i}]`;
    if (typeof l === 'string') return { address: l };
    if (!isObject(l) || typeof l.address !== 'string') fail(`${where} needs an "address" (host:port)`);
    onlyKeys(l, ['address', 'expose'], where);
    const expose = stringList(l.expose, `${where}.expose`);
    return expose ? { address: l.address, expose } : { address: l.address };
  });
  let udp: UdpBindConfig | undefined;
  if (raw.udp !== undefined) {
    const u = typeof raw.udp === 'string' ? { bind: raw.udp } : raw.udp;
    if (!isObject(u) || typeof u.bind !== 'string') fail('udp needs a "bind" (host:port)');
    onlyKeys(u, ['bind', 'expose'], 'udp');
    const expose = stringList(u.expose, 'udp.expose');
    udp = expose ? { bind: u.bind, expose } : { bind: u.bind };
  }
  const s = raw.services ?? {};
  if (!isObject(s)) fail('services must be an object');
  onlyKeys(s, ['echo', 'relay'], 'services');
  for (const k of ['echo', 'relay']) {
    if (s[k] !== undefined && typeof s[k] !== 'boolean') fail(`services.${k} must be true or false`);
  }
  const relayList = raw.relays ?? [];
  if (!Array.isArray(relayList)) fail('relays must be a list');
  const relays = relayList.map((r, i): RelayConfig => {
    const where = `relays[${i}]`;
    if (!isObject(r) || typeof r.at !== 'string') fail(`${where} needs "at" (route to the relay node)`);
    onlyKeys(r, ['at', 'alias', 'expose'], where);
    if (r.alias !== undefined && (typeof r.alias !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(r.alias))) {
      fail(`${where}.alias must be 1-128 letters, digits, '.', '-' or '_'`);
    }
    const out: RelayConfig = { at: r.at };
    if (r.alias !== undefined) out.alias = r.alias as string;
    const expose = stringList(r.expose, `${where}.expose`);
    if (expose) out.expose = expose;
    return out;
  });
  const identity = raw.identity;
  if (
    identity !== undefined &&
    identity !== null &&
    (typeof identity !== 'string' || !NODE_NAME.test(identity))
  ) {
    fail('identity must be an identity name (letters, digits, - and _) or null');
  }
  const sc = raw.secureChannel ?? {};
  if (!isObject(sc)) fail('secureChannel must be an object');
  onlyKeys(
    sc,
    ['listener', 'address', 'expose', 'trustedIdentifiers', 'policy', 'authorities'],
    'secureChannel',
  );
  if (sc.listener !== undefined && typeof sc.listener !== 'boolean')
    fail('secureChannel.listener must be true or false');
  if (sc.address !== undefined && (typeof sc.address !== 'string' || sc.address.length === 0)) {
    fail('secureChannel.address must be a worker address');
  }
  if (sc.policy !== undefined && typeof sc.policy !== 'string')
    fail('secureChannel.policy must be a policy expression');
  const secureChannel: SecureChannelConfig = {
    listener: (sc.listener as boolean | undefined) ?? true,
    address: (sc.address as string | undefined) ?? 'api',
    authorities: stringList(sc.authorities, 'secureChannel.authorities') ?? [],
  };
  const scExpose = stringList(sc.expose, 'secureChannel.expose');
  if (scExpose) secureChannel.expose = scExpose;
  const trusted = identifierList(sc.trustedIdentifiers, 'secureChannel.trustedIdentifiers');
  if (trusted) secureChannel.trustedIdentifiers = trusted;
  if (sc.policy !== undefined) secureChannel.policy = sc.policy as string;
  // Authorities only count through a policy, and a policy only through authorities: either one
  // alone would leave the listener open to everyone (or to no one) without saying so.
  if (secureChannel.authorities.length > 0 && secureChannel.policy === undefined) {
    fail(
      "secureChannel.authorities is set but no policy uses it, so any identity would be accepted: add one (--policy '(= subject.role \"device\")', or '(= subject.has_credential true)' for any credential from them)",
    );
  }
  if (secureChannel.policy !== undefined && secureChannel.authorities.length === 0) {
    fail('secureChannel.policy needs the authorities whose credentials it reads (--authority <identity>)');
  }
  const outlets = listOf(raw.outlets, 'outlets', (o, where): OutletConfig => {
    onlyKeys(o, ['address', 'target', 'policy'], where);
    if (typeof o.target !== 'string') fail(`${where} needs a "target" (host:port)`);
    return {
      target: o.target,
      ...(typeof o.address === 'string' ? { address: o.address } : {}),
      ...(typeof o.policy === 'string' ? { policy: o.policy } : {}),
    };
  });
  const inlets = listOf(raw.inlets, 'inlets', (o, where): InletConfig => {
    onlyKeys(o, ['bind', 'to', 'outlet', 'secure', 'authorized'], where);
    const authorized = identifierList(o.authorized, `${where}.authorized`);
    if (typeof o.bind !== 'string' || typeof o.to !== 'string')
      fail(`${where} needs "bind" (host:port) and "to" (route)`);
    if (o.secure !== undefined && typeof o.secure !== 'boolean')
      fail(`${where}.secure must be true or false`);
    return {
      bind: o.bind,
      to: o.to,
      ...(typeof o.outlet === 'string' ? { outlet: o.outlet } : {}),
      ...(o.secure !== undefined ? { secure: o.secure as boolean } : {}),
      ...(authorized ? { authorized } : {}),
    };
  });
  const ble = raw.ble === undefined ? undefined : parseBleConfig(raw.ble);
  const serial = listOf(raw.serial, 'serial', (o, where): SerialConfig => {
    onlyKeys(o, ['path', 'baudRate', 'reliable', 'expose'], where);
    if (typeof o.path !== 'string' || o.path.length === 0) fail(`${where} needs a "path" (serial device)`);
    const out: SerialConfig = { path: o.path };
    if (o.baudRate !== undefined) {
      if (typeof o.baudRate !== 'number' || !Number.isInteger(o.baudRate) || o.baudRate <= 0) {
        fail(`${where}.baudRate must be a positive integer`);
      }
      out.baudRate = o.baudRate;
    }
    if (o.reliable !== undefined) {
      if (typeof o.reliable !== 'boolean') fail(`${where}.reliable must be true or false`);
      out.reliable = o.reliable;
    }
    const expose = stringList(o.expose, `${where}.expose`);
    if (expose) out.expose = expose;
    return out;
  });
  const log = raw.log ?? {};
  if (!isObject(log)) fail('log must be an object');
  onlyKeys(log, ['level'], 'log');
  const level = log.level ?? 'info';
  if (typeof level !== 'string' || !LOG_LEVELS.includes(level))
    fail(`log.level must be one of ${LOG_LEVELS.join(', ')}`);
  return {
    name,
    tcpListeners,
    ...(udp ? { udp } : {}),
    services: {
      echo: (s.echo as boolean | undefined) ?? true,
      relay: (s.relay as boolean | undefined) ?? false,
    },
    relays,
    ...(identity !== undefined ? { identity: identity as string | null } : {}),
    secureChannel,
    outlets,
    inlets,
    ...(ble ? { ble } : {}),
    ...(serial.length > 0 ? { serial } : {}),
    log: { level },
  };
}

function parseBleConfig(b: unknown): BleConfig {
  if (!isObject(b)) fail('ble must be an object');
  onlyKeys(b, ['hci', 'baudRate', 'role', 'name', 'profile', 'expose', 'relayAt', 'maxMtu'], 'ble');
  const hci = typeof b.hci === 'string' ? parseHciSetting(b.hci) : undefined;
  if (hci === undefined) {
    fail(
      `ble.hci must be a kernel Bluetooth adapter (hci0, hci1, ...) or the path of an HCI UART (e.g. /dev/ttyACM0); got ${JSON.stringify(b.hci)}`,
    );
  }
  if (b.role !== 'central' && b.role !== 'peripheral') fail('ble.role must be "central" or "peripheral"');
  const out: BleConfig = { hci: b.hci as string, role: b.role };
  for (const k of ['baudRate', 'maxMtu'] as const) {
    const v = b[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(`ble.${k} must be a positive integer`);
    out[k] = v;
  }
  if (out.maxMtu !== undefined && (out.maxMtu < 23 || out.maxMtu > 517)) fail('ble.maxMtu must be 23..517');
  if (out.baudRate !== undefined && hci.hciDevice !== undefined) {
    fail(`ble.baudRate is for an HCI UART, not for the kernel adapter ${b.hci}`);
  }
  if (b.name !== undefined) {
    if (typeof b.name !== 'string' || b.name.length === 0 || Buffer.byteLength(b.name) > 20) {
      fail('ble.name must be 1-20 bytes (it shares the 31-byte scan response)');
    }
    out.name = b.name;
  }
  if (b.profile !== undefined) {
    if (b.profile !== 'keyhop' && b.profile !== 'nus') fail('ble.profile must be "keyhop" or "nus"');
    out.profile = b.profile;
  }
  const expose = stringList(b.expose, 'ble.expose');
  if (expose) out.expose = expose;
  if (b.relayAt !== undefined) {
    if (typeof b.relayAt !== 'string') fail('ble.relayAt must be a route');
    out.relayAt = b.relayAt;
  }
  return out;
}

/** The controller a (parsed) `ble` config names: `hciN` is kernel adapter N, anything else a UART. */
export function bleController(config: BleConfig): HciSelection {
  const selected = parseHciSetting(config.hci);
  if (selected?.hciDevice !== undefined) return selected;
  return { uartPath: config.hci, ...(config.baudRate !== undefined ? { baudRate: config.baudRate } : {}) };
}
