import type { ChannelLimits } from '../channel/secure-channels.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { type HciSelection, parseHciSetting } from '../transports/ble/hci/target.js';
import { parseBrokerUrl } from '../transports/mqtt/mailbox-address.js';

export interface TcpListenerConfig {
  /** `host:port` to bind; port 0 picks a free one. */
  address: string;
  /** Local workers that peers of this listener may reach; default: every service of the node. */
  expose?: string[];
  /** Connections open at once (default 1024)… */
  maxConnections?: number;
  /** …and from one source address, an IPv6 /64 counting as one (default 64). */
  maxConnectionsPerSource?: number;
  /** A frame that started must complete within this (plus time for its size); 0: never. Default 30000. */
  frameTimeoutMs?: number;
  /** Close connections over which nothing arrived for this long; 0 (the default): never. */
  idleTimeoutMs?: number;
  /** Received bytes one source's connections may make the node hold (default 32 MiB)… */
  maxBufferedBytesPerSource?: number;
  /** …and all of the listener's (default 256 MiB). */
  maxBufferedBytes?: number;
}

/** The optional limits of a tcpListeners entry: name, least and greatest value. */
const TCP_LISTENER_LIMITS = [
  ['maxConnections', 1, 1_000_000],
  ['maxConnectionsPerSource', 1, 1_000_000],
  ['frameTimeoutMs', 0, 86_400_000],
  ['idleTimeoutMs', 0, 86_400_000],
  ['maxBufferedBytesPerSource', 1024, 2 ** 40],
  ['maxBufferedBytes', 1024, 2 ** 40],
] as const;

/** The optional limits of the secure-channel listener (docs/security.md): name, least and greatest value. */
const CHANNEL_LISTENER_LIMITS = [
  ['maxPendingHandshakes', 1, 1_000_000],
  ['maxHandshakesPerSource', 1, 1_000_000],
  ['maxChannels', 1, 10_000_000],
  ['maxChannelsPerPeer', 1, 10_000_000],
  ['cookieThreshold', 0, 1_000_000],
] as const;

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
  /**
   * Register through a secure channel to the relay node's listener (`at => api`), presenting this
   * node's credentials: what a relay node that gates registrations (relayAccess) requires.
   * Relayed traffic then runs inside that channel.
   */
  secure?: boolean;
  /** With `secure`: accept only these identifiers as the relay node. */
  authorized?: string[];
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
  /**
   * Where to fetch the revocation lists of `authorities`: a route to an enrollment directory
   * (`… => enrollment_directory`), to an authority's node (`… => authority`), or to its secure-channel
   * listener. Their credentials are then refused once revoked, or once the list is stale.
   */
  revocationsFrom?: string;
  /** How often revocation lists are fetched (default 30 s). */
  revocationIntervalSeconds?: number;
  /** Channels close this long after they opened (default: never). */
  maxLifetimeSeconds?: number;
  /** Receive window of the node's channels, in nonces (default 32; wider = queue mode). */
  receiveWindow?: number;
  /**
   * Channels this node accepts or opens outlive its process: kept sealed in the node's directory
   * and resumed without a handshake at the next start (docs/protocols/channel-store.md).
   */
  persist?: boolean;
  /**
   * With `persist`: fdatasync the channel store before each message is delivered (default true:
   * safe across power loss). false: written, not synced (safe across a crash of the process only),
   * many times faster on slow storage (docs/performance.md).
   */
  persistSync?: boolean;
  /** Handshakes in progress per listener (default 1024)… */
  maxPendingHandshakes?: number;
  /** …and from one source address, an IPv6 /64 counting as one (default 32). */
  maxHandshakesPerSource?: number;
  /** Channels open per listener (default 10000)… */
  maxChannels?: number;
  /** …and with one peer identity (default 256). */
  maxChannelsPerPeer?: number;
  /** Handshakes in progress from which first messages must carry a cookie (default maxPendingHandshakes / 4; 0: always). */
  cookieThreshold?: number;
  /** Channels with no traffic either way for this long close (default 600; 0: never). */
  idleTimeoutSeconds?: number;
  /** Payload messages per second (and at once) a peer may send through one channel; default: no limit. */
  messageRate?: { perSecond: number; burst?: number };
}

/** The listener limits a `secureChannel` section sets (the others keep SecureChannels' defaults). */
export function channelLimitsOf(sc: SecureChannelConfig | undefined): ChannelLimits {
  const out: ChannelLimits = {};
  if (!sc) return out;
  for (const [k] of CHANNEL_LISTENER_LIMITS) if (sc[k] !== undefined) out[k] = sc[k];
  if (sc.idleTimeoutSeconds !== undefined) out.idleTimeoutMs = sc.idleTimeoutSeconds * 1000;
  if (sc.messageRate) out.messageRate = { ...sc.messageRate };
  return out;
}

/** An enrollment authority this node serves (`keyhop authority create` made it). */
export interface AuthorityServiceConfig {
  /** The authority's name in KEYHOP_HOME; the node's identity is the authority's. */
  name: string;
  /** Routes to nodes running an enrollment directory, where it publishes and collects requests. */
  directories?: string[];
  /** Seconds between rounds at each directory (default 60). */
  publishIntervalSeconds?: number;
  /** One-time prekeys kept on offer at each directory (default 100). */
  prekeys?: number;
  /** Validity of issued credentials (default 30 days). */
  credentialTtlSeconds?: number;
}

/** Who may register relays on this node's relay service. */
export interface RelayAccessConfig {
  /** Authorities whose credentials count (identity names or change histories). */
  authorities: string[];
  /** An extra ABAC policy the registering peer must satisfy. */
  policy?: string;
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
  /** Accept only these identifiers as the outlet's node: required with a secure channel, unless `trustAnyOutlet`. */
  authorized?: string[];
  /** Explicit opt-out of `authorized`: believe any identity that answers the handshake at `to` (not recommended). */
  trustAnyOutlet?: boolean;
}

/**
 * Why an inlet's trust settings are refused, or undefined: through a secure channel an inlet must
 * name the outlet node's identity, or say in so many words that it trusts whoever answers.
 */
export function inletTrustProblem(c: InletConfig): string | undefined {
  if (c.secure === false) return undefined;
  const named = (c.authorized?.length ?? 0) > 0;
  if (named && c.trustAnyOutlet === true)
    return '`authorized` and `trustAnyOutlet: true` contradict each other: keep one';
  if (named || c.trustAnyOutlet === true) return undefined;
  return (
    "names no identity for the outlet's node, so whoever answers at its route (a relay, whoever holds " +
    "the alias) would get its traffic: set `authorized` to that node's identifier (`keyhop identity show` " +
    'there; CLI --authorized), or `trustAnyOutlet: true` to accept any identity'
  );
}

/** A mailbox on an MQTT broker (or cluster): docs/protocols/mqtt.md. */
export interface MqttConfig {
  /** Broker URLs (`mqtt://host:port`, `mqtts://…`); several for a cluster. */
  urls: string[];
  /** This node's mailbox (default: the node's name). */
  mailbox?: string;
  /** The broker's name in addresses (`7#<broker>/<mailbox>`; default host:port of the first URL). */
  broker?: string;
  username?: string;
  /** A file holding the password (kept out of the config). */
  passwordFile?: string;
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  protocolVersion?: 4 | 5 | 'auto';
  topicPrefix?: string;
  /** Local workers messages from any mailbox may reach (default: the node's services). */
  expose?: string[];
  /** Keep the outbox and delivery cursors in the node's directory (default true with KEYHOP_HOME). */
  durable?: boolean;
  outbox?: { maxMessages?: number; maxBytes?: number; maxAgeSeconds?: number; window?: number };
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
  /** Serve an enrollment authority. */
  authority?: AuthorityServiceConfig;
  /** Run an enrollment directory (`enrollment_directory`); `authorities` restricts who may publish. */
  enrollmentDirectory?: { authorities?: string[] };
  /** Gate relay registrations by credential (`ockam-relay` attribute: `*` or the alias). */
  relayAccess?: RelayAccessConfig;
  /** Mailboxes on MQTT brokers. */
  mqtt?: MqttConfig[];
  /** Run an in-process MQTT broker (aedes) on `bind`, e.g. for a single machine. */
  mqttBroker?: { bind: string };
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
      'authority',
      'enrollmentDirectory',
      'relayAccess',
      'mqtt',
      'mqttBroker',
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
    onlyKeys(l, ['address', 'expose', ...TCP_LISTENER_LIMITS.map(([k]) => k)], where);
    const expose = stringList(l.expose, `${where}.expose`);
    const out: TcpListenerConfig = expose ? { address: l.address, expose } : { address: l.address };
    for (const [k, min, max] of TCP_LISTENER_LIMITS) {
      const v = l[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        fail(`${where}.${k} must be a whole number, ${min}..${max}`);
      }
      out[k] = v;
    }
    return out;
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
    onlyKeys(r, ['at', 'alias', 'expose', 'secure', 'authorized'], where);
    if (r.alias !== undefined && (typeof r.alias !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(r.alias))) {
      fail(`${where}.alias must be 1-128 letters, digits, '.', '-' or '_'`);
    }
    const out: RelayConfig = { at: r.at };
    if (r.alias !== undefined) out.alias = r.alias as string;
    const expose = stringList(r.expose, `${where}.expose`);
    if (expose) out.expose = expose;
    if (r.secure !== undefined) {
      if (typeof r.secure !== 'boolean') fail(`${where}.secure must be true or false`);
      out.secure = r.secure;
    }
    const authorized = identifierList(r.authorized, `${where}.authorized`);
    if (authorized) {
      if (!out.secure) fail(`${where}.authorized needs "secure": true (it names the relay node's identity)`);
      out.authorized = authorized;
    }
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
    [
      'listener',
      'address',
      'expose',
      'trustedIdentifiers',
      'policy',
      'authorities',
      'revocationsFrom',
      'revocationIntervalSeconds',
      'maxLifetimeSeconds',
      'idleTimeoutSeconds',
      'receiveWindow',
      'persist',
      'persistSync',
      ...CHANNEL_LISTENER_LIMITS.map(([k]) => k),
      'messageRate',
    ],
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
  if (sc.revocationsFrom !== undefined) {
    if (typeof sc.revocationsFrom !== 'string' || sc.revocationsFrom.length === 0)
      fail('secureChannel.revocationsFrom must be a route');
    if (secureChannel.authorities.length === 0)
      fail('secureChannel.revocationsFrom needs the authorities whose lists it fetches (--authority)');
    secureChannel.revocationsFrom = sc.revocationsFrom;
  }
  const interval = seconds(
    sc.revocationIntervalSeconds,
    'secureChannel.revocationIntervalSeconds',
    1,
    86_400,
  );
  if (interval !== undefined) secureChannel.revocationIntervalSeconds = interval;
  const lifetime = seconds(sc.maxLifetimeSeconds, 'secureChannel.maxLifetimeSeconds', 1, 10 * 365 * 86_400);
  if (lifetime !== undefined) secureChannel.maxLifetimeSeconds = lifetime;
  const idle = seconds(sc.idleTimeoutSeconds, 'secureChannel.idleTimeoutSeconds', 0, 10 * 365 * 86_400);
  if (idle !== undefined) secureChannel.idleTimeoutSeconds = idle;
  if (sc.receiveWindow !== undefined) {
    const w = sc.receiveWindow;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 32 || w > 65_536) {
      fail("secureChannel.receiveWindow must be a whole number from 32 (Ockam's) to 65536");
    }
    secureChannel.receiveWindow = w;
  }
  if (sc.persist !== undefined) {
    if (typeof sc.persist !== 'boolean') fail('secureChannel.persist must be true or false');
    secureChannel.persist = sc.persist;
  }
  if (sc.persistSync !== undefined) {
    if (typeof sc.persistSync !== 'boolean') fail('secureChannel.persistSync must be true or false');
    secureChannel.persistSync = sc.persistSync;
  }
  for (const [k, min, max] of CHANNEL_LISTENER_LIMITS) {
    const v = sc[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      fail(`secureChannel.${k} must be a whole number, ${min}..${max}`);
    secureChannel[k] = v;
  }
  if (sc.messageRate !== undefined) {
    const r = sc.messageRate;
    if (!isObject(r)) fail('secureChannel.messageRate must be an object: { "perSecond": …, "burst": … }');
    onlyKeys(r, ['perSecond', 'burst'], 'secureChannel.messageRate');
    const { perSecond, burst } = r;
    if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0 || perSecond > 1e9)
      fail(
        'secureChannel.messageRate.perSecond must be a number of messages per second, > 0 and <= 1000000000',
      );
    if (
      burst !== undefined &&
      (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1 || burst > 1e9)
    )
      fail('secureChannel.messageRate.burst must be a whole number, 1..1000000000');
    secureChannel.messageRate = burst === undefined ? { perSecond } : { perSecond, burst: burst as number };
  }
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
    onlyKeys(o, ['bind', 'to', 'outlet', 'secure', 'authorized', 'trustAnyOutlet'], where);
    const authorized = identifierList(o.authorized, `${where}.authorized`);
    if (typeof o.bind !== 'string' || typeof o.to !== 'string')
      fail(`${where} needs "bind" (host:port) and "to" (route)`);
    if (o.secure !== undefined && typeof o.secure !== 'boolean')
      fail(`${where}.secure must be true or false`);
    if (o.trustAnyOutlet !== undefined && typeof o.trustAnyOutlet !== 'boolean')
      fail(`${where}.trustAnyOutlet must be true or false`);
    const inlet: InletConfig = {
      bind: o.bind,
      to: o.to,
      ...(typeof o.outlet === 'string' ? { outlet: o.outlet } : {}),
      ...(o.secure !== undefined ? { secure: o.secure as boolean } : {}),
      ...(authorized ? { authorized } : {}),
      ...(o.trustAnyOutlet === true ? { trustAnyOutlet: true } : {}),
    };
    const problem = inletTrustProblem(inlet);
    if (problem) fail(`${where} ${problem}`);
    return inlet;
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
  const authority = raw.authority === undefined ? undefined : parseAuthorityConfig(raw.authority);
  if (authority && identity !== undefined && identity !== authority.name) {
    fail(
      `the node serves authority "${authority.name}", so its identity must be "${authority.name}" (got ${JSON.stringify(identity)})`,
    );
  }
  let enrollmentDirectory: NodeConfig['enrollmentDirectory'];
  if (raw.enrollmentDirectory !== undefined) {
    const d = raw.enrollmentDirectory;
    if (!isObject(d)) fail('enrollmentDirectory must be an object ({} for any authority)');
    onlyKeys(d, ['authorities'], 'enrollmentDirectory');
    const authorities = identifierList(d.authorities, 'enrollmentDirectory.authorities');
    enrollmentDirectory = authorities ? { authorities } : {};
  }
  let relayAccess: RelayAccessConfig | undefined;
  if (raw.relayAccess !== undefined) {
    const r = raw.relayAccess;
    if (!isObject(r)) fail('relayAccess must be an object');
    onlyKeys(r, ['authorities', 'policy'], 'relayAccess');
    const authorities = stringList(r.authorities, 'relayAccess.authorities') ?? [];
    if (authorities.length === 0) fail('relayAccess needs the authorities whose credentials it reads');
    if (r.policy !== undefined && (typeof r.policy !== 'string' || r.policy.length === 0))
      fail('relayAccess.policy must be a policy expression');
    relayAccess = { authorities, ...(r.policy !== undefined ? { policy: r.policy as string } : {}) };
    if (s.relay !== true) fail('relayAccess is set but the node runs no relay service (services.relay)');
  }
  const mqtt = listOf(raw.mqtt, 'mqtt', parseMqttConfig);
  let mqttBroker: NodeConfig['mqttBroker'];
  if (raw.mqttBroker !== undefined) {
    const b = raw.mqttBroker;
    if (!isObject(b) || typeof b.bind !== 'string') fail('mqttBroker needs a "bind" (host:port)');
    onlyKeys(b, ['bind'], 'mqttBroker');
    mqttBroker = { bind: b.bind };
  }
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
    ...(identity !== undefined
      ? { identity: identity as string | null }
      : authority
        ? { identity: authority.name }
        : {}),
    secureChannel,
    outlets,
    inlets,
    ...(ble ? { ble } : {}),
    ...(serial.length > 0 ? { serial } : {}),
    ...(authority ? { authority } : {}),
    ...(enrollmentDirectory ? { enrollmentDirectory } : {}),
    ...(relayAccess ? { relayAccess } : {}),
    ...(mqtt.length > 0 ? { mqtt } : {}),
    ...(mqttBroker ? { mqttBroker } : {}),
    log: { level },
  };
}

function parseMqttConfig(o: Record<string, unknown>, where: string): MqttConfig {
  onlyKeys(
    o,
    [
      'url',
      'urls',
      'mailbox',
      'broker',
      'username',
      'passwordFile',
      'tls',
      'protocolVersion',
      'topicPrefix',
      'expose',
      'durable',
      'outbox',
    ],
    where,
  );
  const urls =
    o.urls !== undefined
      ? stringList(o.urls, `${where}.urls`)
      : typeof o.url === 'string'
        ? [o.url]
        : undefined;
  if (!urls || urls.length === 0) fail(`${where} needs a "url" (mqtt://host:port) or "urls"`);
  for (const u of urls) {
    try {
      parseBrokerUrl(u);
    } catch (e) {
      fail(`${where}: ${describeError(e)}`);
    }
  }
  const out: MqttConfig = { urls };
  for (const k of ['mailbox', 'broker', 'username', 'passwordFile', 'topicPrefix'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length === 0) fail(`${where}.${k} must be a non-empty string`);
    out[k] = v;
  }
  if (o.protocolVersion !== undefined) {
    if (o.protocolVersion !== 4 && o.protocolVersion !== 5 && o.protocolVersion !== 'auto') {
      fail(`${where}.protocolVersion must be 4 (MQTT 3.1.1), 5 or "auto"`);
    }
    out.protocolVersion = o.protocolVersion;
  }
  if (o.tls !== undefined) {
    const t = o.tls;
    if (!isObject(t)) fail(`${where}.tls must be an object`);
    onlyKeys(t, ['ca', 'cert', 'key', 'rejectUnauthorized'], `${where}.tls`);
    const tls: NonNullable<MqttConfig['tls']> = {};
    for (const k of ['ca', 'cert', 'key'] as const) {
      if (t[k] === undefined) continue;
      if (typeof t[k] !== 'string') fail(`${where}.tls.${k} must be a file path`);
      tls[k] = t[k] as string;
    }
    if (t.rejectUnauthorized !== undefined) {
      if (typeof t.rejectUnauthorized !== 'boolean')
        fail(`${where}.tls.rejectUnauthorized must be true or false`);
      tls.rejectUnauthorized = t.rejectUnauthorized;
    }
    if ((tls.cert === undefined) !== (tls.key === undefined))
      fail(`${where}.tls needs both "cert" and "key", or neither`);
    out.tls = tls;
  }
  const expose = stringList(o.expose, `${where}.expose`);
  if (expose) out.expose = expose;
  if (o.durable !== undefined) {
    if (typeof o.durable !== 'boolean') fail(`${where}.durable must be true or false`);
    out.durable = o.durable;
  }
  if (o.outbox !== undefined) {
    const b = o.outbox;
    if (!isObject(b)) fail(`${where}.outbox must be an object`);
    onlyKeys(b, ['maxMessages', 'maxBytes', 'maxAgeSeconds', 'window'], `${where}.outbox`);
    const outbox: NonNullable<MqttConfig['outbox']> = {};
    for (const k of ['maxMessages', 'maxBytes', 'maxAgeSeconds', 'window'] as const) {
      const v = b[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (k === 'maxAgeSeconds' ? 0 : 1)) {
        fail(`${where}.outbox.${k} must be a whole number${k === 'maxAgeSeconds' ? ' >= 0' : ' >= 1'}`);
      }
      outbox[k] = v;
    }
    out.outbox = outbox;
  }
  return out;
}

function seconds(v: unknown, where: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    fail(`${where} must be whole seconds, ${min}..${max}`);
  return v;
}

function parseAuthorityConfig(a: unknown): AuthorityServiceConfig {
  if (!isObject(a)) fail('authority must be an object');
  onlyKeys(
    a,
    ['name', 'directories', 'publishIntervalSeconds', 'prekeys', 'credentialTtlSeconds'],
    'authority',
  );
  if (typeof a.name !== 'string' || !NODE_NAME.test(a.name))
    fail('authority.name must be an authority name (letters, digits, - and _)');
  const out: AuthorityServiceConfig = { name: a.name };
  const directories = stringList(a.directories, 'authority.directories');
  if (directories) out.directories = directories;
  const interval = seconds(a.publishIntervalSeconds, 'authority.publishIntervalSeconds', 1, 86_400);
  if (interval !== undefined) out.publishIntervalSeconds = interval;
  if (a.prekeys !== undefined) {
    if (typeof a.prekeys !== 'number' || !Number.isInteger(a.prekeys) || a.prekeys < 0 || a.prekeys > 10_000)
      fail('authority.prekeys must be 0..10000');
    out.prekeys = a.prekeys;
  }
  const ttl = seconds(a.credentialTtlSeconds, 'authority.credentialTtlSeconds', 60, 10 * 365 * 86_400);
  if (ttl !== undefined) out.credentialTtlSeconds = ttl;
  return out;
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
