import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { describeError, type ErrorCode, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import { NODE_NAME, type NodeConfig, parseNodeConfig } from '../../node/config.js';
import { controlCall } from '../../node/control-client.js';
import { runNodeProcess, writeNodeConfig } from '../../node/node-process.js';
import { keyhopHome, type NodePaths, nodePaths } from '../../node/paths.js';
import { print } from '../output.js';

interface StartOptions {
  config?: string;
  tcpListener?: string[];
  udpBind?: string;
  mqtt?: string[];
  mqttMailbox?: string;
  mqttName?: string;
  mqttUser?: string;
  mqttPasswordFile?: string;
  mqttCa?: string;
  mqttCert?: string;
  mqttKey?: string;
  mqttBroker?: string | boolean;
  identity?: string;
  authority?: string[];
  trust?: string[];
  policy?: string;
  relayService?: boolean;
  echo?: boolean;
  relayAt?: string;
  relayAlias?: string;
  relaySecure?: boolean;
  serveAuthority?: string;
  authorityDirectory?: string[];
  enrollmentDirectory?: boolean;
  relayAuthority?: string[];
  relayPolicy?: string;
  revocationsFrom?: string;
  revocationInterval?: string;
  maxChannelLifetime?: string;
  channelIdleTimeout?: string;
  persistChannels?: boolean;
  logLevel?: string;
  foreground?: boolean;
  json?: boolean;
  home?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `cannot read config ${path}: ${describeError(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `config ${path} is not valid JSON: ${describeError(e)}`);
  }
}

/** `list` plus the items of `extra` it does not already hold (as JSON). */
function union<T>(list: readonly T[] | undefined, extra: readonly T[]): T[] {
  const out = [...(list ?? [])];
  const seen = new Set(out.map((x) => JSON.stringify(x)));
  for (const x of extra) if (!seen.has(JSON.stringify(x))) out.push(x);
  return out;
}

/**
 * The configuration to run: `--config <file>` if given (it replaces what was stored), else the
 * node's stored configuration (`nodes/<name>/config.json`, from an earlier start), else nothing;
 * then the command-line flags on top (lists gain what they did not hold).
 */
async function effectiveConfig(home: string, name: string | undefined, o: StartOptions): Promise<NodeConfig> {
  let raw: Record<string, unknown> = {};
  if (name !== undefined && !NODE_NAME.test(name)) parseNodeConfig({ name }); // the one CONFIG_INVALID message
  if (o.config) raw = (await readConfigFile(o.config)) as Record<string, unknown>;
  else if (name) {
    const stored = nodePaths(home, name).config;
    const text = await readFile(stored, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      try {
        raw = JSON.parse(text) as Record<string, unknown>;
      } catch (e) {
        throw new KeyhopError(
          ErrorCodes.CONFIG_INVALID,
          `the stored configuration ${stored} is not valid JSON (${describeError(e)}): fix it, or start with --config <file>`,
        );
      }
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'node config must be a JSON object');
  }
  const merged: Record<string, unknown> = { ...raw };
  if (name) merged.name = name;
  if (o.tcpListener?.length) {
    const known = new Set(
      ((raw.tcpListeners as unknown[]) ?? []).map((l) =>
        typeof l === 'string' ? l : (l as { address?: string }).address,
      ),
    );
    merged.tcpListeners = [
      ...((raw.tcpListeners as unknown[]) ?? []),
      ...o.tcpListener.filter((a) => !known.has(a)),
    ];
  }
  if (o.udpBind) merged.udp = { bind: o.udpBind };
  const embedded = o.mqttBroker === true ? '127.0.0.1:1883' : o.mqttBroker || undefined;
  if (embedded) merged.mqttBroker = { bind: embedded };
  const mqttUrls = o.mqtt?.length ? o.mqtt : embedded ? [`mqtt://${embedded}`] : undefined;
  const mqttDetails = [
    o.mqttMailbox,
    o.mqttName,
    o.mqttUser,
    o.mqttPasswordFile,
    o.mqttCa,
    o.mqttCert,
    o.mqttKey,
  ];
  if (!mqttUrls && mqttDetails.some((v) => v !== undefined)) {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      'the --mqtt-… options describe a mailbox: give its broker with --mqtt <url> (or --mqtt-broker)',
    );
  }
  if (mqttUrls) {
    const tls = {
      ...(o.mqttCa ? { ca: o.mqttCa } : {}),
      ...(o.mqttCert ? { cert: o.mqttCert } : {}),
      ...(o.mqttKey ? { key: o.mqttKey } : {}),
    };
    const mailbox = {
      urls: mqttUrls,
      ...(o.mqttMailbox ? { mailbox: o.mqttMailbox } : {}),
      ...(o.mqttName ? { broker: o.mqttName } : {}),
      ...(o.mqttUser ? { username: o.mqttUser } : {}),
      ...(o.mqttPasswordFile ? { passwordFile: o.mqttPasswordFile } : {}),
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
    };
    // The command line's mailbox replaces a stored one on the same broker name, or is added.
    const key = (m: Record<string, unknown>) =>
      `${m.broker ?? ''}|${(m.urls as string[] | undefined)?.[0] ?? m.url}`;
    const stored = ((raw.mqtt as Record<string, unknown>[] | undefined) ?? []).filter(
      (m) => key(m) !== key(mailbox),
    );
    merged.mqtt = [...stored, mailbox];
  }
  if (o.serveAuthority || o.authorityDirectory?.length) {
    const a = { ...((raw.authority as Record<string, unknown>) ?? {}) };
    if (o.serveAuthority) a.name = o.serveAuthority;
    if (a.name === undefined)
      throw new KeyhopError(ErrorCodes.USAGE, '--authority-directory needs --serve-authority <name>');
    if (o.authorityDirectory?.length) a.directories = union(a.directories as string[], o.authorityDirectory);
    merged.authority = a;
  }
  const served = (merged.authority as { name?: string } | undefined)?.name;
  if (o.identity) merged.identity = o.identity;
  else if (raw.identity === undefined) merged.identity = served ?? 'default';
  if (
    o.authority?.length ||
    o.trust?.length ||
    o.policy ||
    o.revocationsFrom ||
    o.revocationInterval ||
    o.maxChannelLifetime ||
    o.channelIdleTimeout ||
    o.persistChannels
  ) {
    const sc = { ...((raw.secureChannel as Record<string, unknown>) ?? {}) };
    if (o.authority?.length) sc.authorities = union(sc.authorities as string[], o.authority);
    if (o.trust?.length) sc.trustedIdentifiers = union(sc.trustedIdentifiers as string[], o.trust);
    if (o.policy) sc.policy = o.policy;
    if (o.revocationsFrom) sc.revocationsFrom = o.revocationsFrom;
    if (o.revocationInterval)
      sc.revocationIntervalSeconds = secondsOption(o.revocationInterval, '--revocation-interval');
    if (o.maxChannelLifetime)
      sc.maxLifetimeSeconds = secondsOption(o.maxChannelLifetime, '--max-channel-lifetime');
    if (o.channelIdleTimeout)
      sc.idleTimeoutSeconds = secondsOption(o.channelIdleTimeout, '--channel-idle-timeout');
    if (o.persistChannels) sc.persist = true;
    merged.secureChannel = sc;
  }
  const services = { ...((raw.services as Record<string, unknown>) ?? {}) };
  if (o.relayService) services.relay = true;
  if (o.echo === false) services.echo = false;
  merged.services = services;
  if (o.enrollmentDirectory && raw.enrollmentDirectory === undefined) merged.enrollmentDirectory = {};
  if (o.relayAuthority?.length || o.relayPolicy) {
    const r = { ...((raw.relayAccess as Record<string, unknown>) ?? {}) };
    if (o.relayAuthority?.length) r.authorities = union(r.authorities as string[], o.relayAuthority);
    if (o.relayPolicy) r.policy = o.relayPolicy;
    merged.relayAccess = r;
  }
  if (o.relayAt) {
    merged.relays = union(raw.relays as unknown[], [
      {
        at: o.relayAt,
        ...(o.relayAlias ? { alias: o.relayAlias } : {}),
        ...(o.relaySecure ? { secure: true } : {}),
      },
    ]);
  } else if (o.relayAlias || o.relaySecure) {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `${o.relayAlias ? '--relay-alias' : '--relay-secure'} names a relay made with --relay-at <route>`,
    );
  }
  if (o.logLevel) merged.log = { level: o.logLevel };
  return parseNodeConfig(merged, { name: 'default' });
}

/** Seconds from an option: a whole number, or with a unit (30s, 15m, 12h, 7d). */
export function secondsOption(text: string, option: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m)
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `${option} takes seconds, or a number with s, m, h or d (got "${text}")`,
    );
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

async function isRunning(control: string): Promise<boolean> {
  try {
    await controlCall(control, 'node.show', {}, 2000);
    return true;
  } catch {
    return false;
  }
}

/**
 * The error of a background node that exited while starting: its own one-line `keyhop: error
 * [CODE]: …` from the end of its log, with that code, or the last log line.
 */
async function startupFailure(name: string, paths: NodePaths): Promise<KeyhopError> {
  const lines = (await readFile(paths.log, 'utf8').catch(() => '')).trim().split('\n');
  for (let i = lines.length - 1; i >= Math.max(0, lines.length - 20); i--) {
    const m = /^keyhop: error \[([A-Z_]+)\]: (.*)$/.exec(lines[i] ?? '');
    if (m) return new KeyhopError(m[1] as ErrorCode, `node "${name}" did not start: ${m[2]}`);
  }
  const last = lines[lines.length - 1] ?? '';
  let why = last;
  try {
    const j = JSON.parse(last) as { msg?: string; err?: string };
    why = [j.msg, j.err].filter(Boolean).join(': ');
  } catch {
    // not a JSON log line: quote it as it is
  }
  return new KeyhopError(
    ErrorCodes.CONTROL_FAILED,
    `node "${name}" did not start (${why || 'no output'}; log: ${paths.log})`,
  );
}

/** One line per remote dependency that is not up yet (relays and inlet channels retry in the background). */
function pendingRemotes(d: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const r of (d.relays as { at: string; state: string; lastError: string | null }[]) ?? []) {
    if (r.state !== 'up') out.push(`relay at ${r.at}: ${r.state}${r.lastError ? ` (${r.lastError})` : ''}`);
  }
  for (const i of (d.inlets as { address: string; to: string; state: string; lastError: string | null }[]) ??
    []) {
    if (i.state === 'retrying' || i.state === 'connecting') {
      out.push(`inlet ${i.address} -> ${i.to}: ${i.state}${i.lastError ? ` (${i.lastError})` : ''}`);
    }
  }
  return out;
}

/**
 * V8 flags of a node process that keyhop starts (in the background, or from its systemd unit).
 * After a flood, V8 gives memory back only after a full collection, which an idle process never
 * runs: `--expose-gc` lets the node run one when it turns quiet (node/memory-relief.ts), and a
 * young generation of at most 3 × 4 MiB instead of 3 × 16 keeps what a burst can grow smaller
 * (a few per cent of small-message throughput; docs/performance.md, "Attack benchmark").
 */
export const NODE_PROCESS_V8_FLAGS = ['--max-semi-space-size=4', '--expose-gc'];

async function startNode(name: string | undefined, o: StartOptions, foreground: boolean): Promise<void> {
  const home = keyhopHome(o.home);
  const config = await effectiveConfig(home, name, o);
  const paths = nodePaths(home, config.name);
  if (await isRunning(paths.control)) {
    throw new KeyhopError(
      ErrorCodes.NODE_EXISTS,
      `node "${config.name}" is already running (keyhop node stop ${config.name} first)`,
    );
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  // The node keeps its configuration in its home once it started (runNodeProcess), so that
  // `node start <name>` restores it; a start that fails leaves the stored one as it was.
  if (foreground) {
    await runNodeProcess(config, paths, home, (node) => {
      if (o.json) process.stdout.write(`${JSON.stringify({ ready: true, ...node.describe() })}\n`);
      else {
        process.stdout.write(
          `node ${config.name} running (pid ${process.pid}); SIGTERM or Ctrl-C stops it\n`,
        );
        for (const line of pendingRemotes(node.describe())) process.stdout.write(`  ${line}; retrying\n`);
      }
    });
    return;
  }
  // The background process gets this configuration through a file of its own.
  const handover = join(paths.dir, 'start.json');
  await writeNodeConfig(handover, config);
  const logFd = openSync(paths.log, 'a', 0o600);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(
    process.execPath,
    [...NODE_PROCESS_V8_FLAGS, main, 'node', 'run', config.name, '--home', home, '--config', handover],
    {
      detached: true,
      stdio: ['ignore', 'ignore', logFd],
    },
  );
  closeSync(logFd);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? 1;
  });
  child.unref();
  try {
    await waitUntilStarted(config.name, paths, o, () => exited);
  } finally {
    await rm(handover, { force: true });
  }
}

async function waitUntilStarted(
  name: string,
  paths: NodePaths,
  o: StartOptions,
  exited: () => number | null,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited() !== null) throw await startupFailure(name, paths);
    try {
      const info = (await controlCall(paths.control, 'node.show', {}, 1000)) as Record<string, unknown>;
      print(o, info, (d) =>
        [
          `node ${d.name} started (pid ${d.pid}); logs: ${paths.log}`,
          ...pendingRemotes(d).map((l) => `  ${l}; retrying in the background (keyhop node show ${d.name})`),
        ].join('\n'),
      );
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new KeyhopError(
    ErrorCodes.TIMEOUT,
    `node "${name}" did not become ready within 15 s; see ${paths.log}`,
  );
}

function describeNode(d: Record<string, unknown>): string {
  if (d.status === 'stopped') {
    return [
      `node ${d.name} (stopped; keyhop node start ${d.name} runs it again with this configuration)`,
      JSON.stringify(d.config, null, 2),
    ].join('\n');
  }
  const lines = [`node ${d.name} (pid ${d.pid}, since ${d.startedAt})`];
  lines.push(`  services:   ${(d.services as string[]).join(', ') || '-'}`);
  for (const l of d.tcpListeners as { route: string }[]) lines.push(`  listener:   ${l.route}`);
  const udp = d.udp as { route: string; peers: number } | null;
  if (udp) lines.push(`  udp:        ${udp.route} (${udp.peers} peers)`);
  const broker = d.mqttBroker as { url: string; clients: number } | null;
  if (broker) lines.push(`  broker:     ${broker.url} (embedded, ${broker.clients} clients)`);
  for (const m of (d.mqtt as
    | { route: string; connected: boolean; lastError: string | null; outbox: { messages: number } }[]
    | undefined) ?? []) {
    const state = m.connected ? 'connected' : `not connected${m.lastError ? `: ${m.lastError}` : ''}`;
    lines.push(`  mailbox:    ${m.route} (${state}; ${m.outbox.messages} in the outbox)`);
  }
  for (const c of d.tcpConnections as { peer: string; direction: string; sender: string }[]) {
    lines.push(`  connection: ${c.direction} ${c.peer} (route via ${c.sender})`);
  }
  for (const r of d.relays as {
    name: string | null;
    at: string;
    state: string;
    route: string | null;
    lastError: string | null;
    nextAttemptAt: string | null;
  }[]) {
    const why =
      r.state === 'up'
        ? ''
        : `${r.lastError ? ` ${r.lastError};` : ''}${r.nextAttemptAt ? ` next try ${r.nextAttemptAt}` : ''}`;
    lines.push(
      `  relay:      ${r.name ?? '?'} at ${r.at} [${r.state}${why}]${r.route ? ` reachable as ${r.route}` : ''}`,
    );
  }
  if (d.identity) lines.push(`  identity:   ${d.identity}`);
  if (d.secureChannelListener)
    lines.push(`  channels:   listener ${d.secureChannelListener} accepts ${d.secureChannelTrust ?? '?'}`);
  for (const c of d.secureChannels as {
    encryptor: string;
    role: string;
    peer: string | null;
    state: string;
  }[]) {
    lines.push(`  channel:    ${c.encryptor} ${c.role} ${c.state} peer ${c.peer ?? '?'}`);
  }
  for (const o of d.outlets as { address: string; target: string }[])
    lines.push(`  outlet:     ${o.address} -> ${o.target}`);
  for (const i of d.inlets as {
    address: string;
    to: string;
    state: string;
    lastError: string | null;
    trustAnyOutlet?: boolean;
  }[])
    lines.push(
      `  inlet:      ${i.address} -> ${i.to} [${i.state}${i.lastError ? ` ${i.lastError}` : ''}]${i.trustAnyOutlet ? ' trusts any outlet' : ''}`,
    );
  for (const r of d.relaysHosted as { name: string; forwarded: number }[]) {
    lines.push(`  hosting:    ${r.name} (${r.forwarded} forwarded)`);
  }
  return lines.join('\n');
}

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description('start, stop and inspect keyhop nodes');
  const collect = (v: string, prev: string[] = []) => [...prev, v];

  const startOptions = (c: Command): Command =>
    c
      .argument('[name]', 'node name (default "default"); its stored configuration is restored', undefined)
      .option('--config <file>', 'JSON node config (see docs/cli.md); replaces the stored one')
      .option('--tcp-listener <host:port>', 'listen for TCP on host:port (repeatable)', collect)
      .option('--udp-bind <host:port>', 'open a UDP socket on host:port (2#… routes)')
      .option(
        '--mqtt <url>',
        "open this node's mailbox on the MQTT broker at <url> (mqtt:// or mqtts://; repeat for a cluster's nodes)",
        collect,
      )
      .option('--mqtt-mailbox <name>', "the node's mailbox name on the broker (default: the node's name)")
      .option(
        '--mqtt-name <name>',
        "the broker's name in addresses, 7#<name>/<mailbox> (default: host:port of the first --mqtt)",
      )
      .option('--mqtt-user <name>', 'broker user name')
      .option('--mqtt-password-file <file>', 'file holding the broker password')
      .option('--mqtt-ca <file>', 'PEM of the CA that signed the broker certificate (mqtts://)')
      .option('--mqtt-cert <file>', 'client certificate (PEM) for brokers that ask for one')
      .option('--mqtt-key <file>', 'key of --mqtt-cert (PEM)')
      .option(
        '--mqtt-broker [host:port]',
        'run an in-process MQTT broker (default 127.0.0.1:1883); without --mqtt the node opens its mailbox there',
      )
      .option(
        '--identity <name>',
        'identity in KEYHOP_HOME (default "default", made on first use; any other must exist: keyhop identity create)',
      )
      .option(
        '--authority <identity>',
        'trusted credential authority: identity name or change history hex (repeatable; needs --policy)',
        collect,
      )
      .option(
        '--trust <identifier>',
        'accept secure channels only from this identifier (repeatable)',
        collect,
      )
      .option(
        '--policy <expression>',
        'accept secure channels only from peers whose credentials from --authority satisfy this ABAC policy',
      )
      .option('--relay-service', 'run the relay service (forwarding_service)')
      .option('--no-echo', 'do not run the echo service')
      .option(
        '--relay-at <route>',
        'register a relay for this node at the node at <route> (retried until it works)',
      )
      .option('--relay-alias <alias>', 'stable relay name for --relay-at')
      .option(
        '--relay-secure',
        "register the --relay-at relay through a secure channel, with this node's credentials (for relay nodes that gate registrations)",
      )
      .option(
        '--relay-authority <identity>',
        'gate relay registrations: credentials from this authority (repeatable); a peer needs attribute ockam-relay = * or the alias',
        collect,
      )
      .option(
        '--relay-policy <expression>',
        'with --relay-authority: an extra ABAC policy registering peers must satisfy',
      )
      .option(
        '--enrollment-directory',
        'run an enrollment directory (prekey bundles and mailboxes for offline authorities)',
      )
      .option(
        '--serve-authority <name>',
        'serve enrollment authority <name> (keyhop authority create); the node takes its identity',
      )
      .option(
        '--authority-directory <route>',
        'with --serve-authority: publish at and collect from the enrollment directory at <route> (repeatable)',
        collect,
      )
      .option(
        '--revocations-from <route>',
        "fetch the --authority revocation lists from <route> (an enrollment directory, or the authority's node)",
      )
      .option(
        '--revocation-interval <seconds>',
        'how often to fetch revocation lists (default 30s; units s, m, h, d)',
      )
      .option(
        '--max-channel-lifetime <seconds>',
        'close secure channels this long after they opened (units s, m, h, d)',
      )
      .option(
        '--channel-idle-timeout <seconds>',
        'close secure channels with no traffic either way for this long (default 10m; 0 never; units s, m, h, d)',
      )
      .option(
        '--persist-channels',
        'secure channels this node accepts outlive it: kept sealed, resumed without a handshake at the next start',
      )
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
      .option('--json', 'machine-readable output');

  startOptions(node.command('start'))
    .description('start a node in the background (--foreground: in this process, as node run)')
    .option('--foreground', 'run in this process until SIGTERM or Ctrl-C (same as keyhop node run)')
    .action(async (name: string | undefined, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<StartOptions>();
      await startNode(name, o, o.foreground === true);
    });

  startOptions(node.command('run'))
    .description('run a node in the foreground until SIGTERM or Ctrl-C (for systemd: keyhop node service)')
    .action(async (name: string | undefined, _o, cmd: Command) => {
      await startNode(name, cmd.optsWithGlobals<StartOptions>(), true);
    });

  node
    .command('stop')
    .description('stop a running node')
    .argument('<name>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const paths = nodePaths(keyhopHome(o.home), name);
      const pid = Number((await readFile(paths.pid, 'utf8').catch(() => '0')).trim());
      try {
        await controlCall(paths.control, 'node.stop', {}, 5000);
      } catch {
        // The control socket does not answer: SIGTERM by pid, if that pid is still this node's.
        if (!pid || !(await isNodeProcess(pid, name))) {
          throw new KeyhopError(
            ErrorCodes.NODE_NOT_RUNNING,
            `node "${name}" is not running (keyhop node list shows the nodes here)`,
          );
        }
        process.kill(pid, 'SIGTERM');
      }
      const deadline = Date.now() + 10_000;
      while (pid && processAlive(pid) && Date.now() < deadline) await sleep(50);
      if (pid && processAlive(pid)) {
        throw new KeyhopError(
          ErrorCodes.TIMEOUT,
          `node "${name}" (pid ${pid}) did not stop within 10 s; see ${paths.log}, or end it with kill -9 ${pid}`,
        );
      }
      print(o, { name, stopped: true }, () => `node ${name} stopped`);
    });

  node
    .command('list')
    .description('list the nodes in KEYHOP_HOME and whether they run')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const home = keyhopHome(o.home);
      const names = (await readdir(`${home}/nodes`).catch(() => [] as string[])).sort();
      const rows = [];
      for (const name of names) {
        const paths = nodePaths(home, name);
        let info: Record<string, unknown> | undefined;
        try {
          info = (await controlCall(paths.control, 'node.show', {}, 2000)) as Record<string, unknown>;
        } catch {
          info = undefined;
        }
        rows.push({
          name,
          status: info ? 'running' : 'stopped',
          pid: info?.pid ?? null,
          listeners: ((info?.tcpListeners as { route: string }[]) ?? []).map((l) => l.route),
        });
      }
      print(o, rows, (r) =>
        r.length === 0
          ? 'no nodes'
          : r.map((n) => `${n.name.padEnd(20)} ${n.status.padEnd(8)} ${n.listeners.join(' ')}`).join('\n'),
      );
    });

  node
    .command('renew')
    .description(
      "renew a running node's credential from its enrollment authority now, and push it into its open channels (a node does this by itself at 80% of the credential's lifetime)",
    )
    .argument('<name>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const r = (await controlCall(
        nodePaths(keyhopHome(o.home), name).control,
        'credential.renew',
        {},
        60_000,
      )) as {
        expiresAt: string | null;
        renewals: number;
      };
      print(o, r, (x) => `node ${name}: credential renewed, valid until ${x.expiresAt}`);
    });

  node
    .command('show')
    .description(
      'show a node: listeners, connections, relays, inlets, channels, counters and configuration if it runs; its stored configuration if not',
    )
    .argument('<name>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const paths = nodePaths(keyhopHome(o.home), name);
      let info: Record<string, unknown>;
      try {
        info = {
          status: 'running',
          ...((await controlCall(paths.control, 'node.show')) as Record<string, unknown>),
        };
      } catch (e) {
        if (!isKeyhopError(e, ErrorCodes.NODE_NOT_RUNNING)) throw e;
        // A stopped node still has its configuration: show that.
        const stored = await readFile(paths.config, 'utf8').catch(() => undefined);
        if (stored === undefined) {
          throw new KeyhopError(
            ErrorCodes.NODE_NOT_FOUND,
            `no node "${name}" (keyhop node list shows the nodes here)`,
          );
        }
        info = { name, status: 'stopped', config: JSON.parse(stored) as unknown };
      }
      print(o, info, describeNode);
    });

  node
    .command('delete')
    .description('forget a stopped node: its stored configuration and log (identities and vaults stay)')
    .argument('<name>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const paths = nodePaths(keyhopHome(o.home), name);
      if (await isRunning(paths.control)) {
        throw new KeyhopError(
          ErrorCodes.NODE_EXISTS,
          `node "${name}" is running: keyhop node stop ${name} first`,
        );
      }
      const exists = await readdir(paths.dir).then(
        () => true,
        () => false,
      );
      if (!exists)
        throw new KeyhopError(
          ErrorCodes.NODE_NOT_FOUND,
          `no node "${name}" (keyhop node list shows the nodes here)`,
        );
      await rm(paths.dir, { recursive: true, force: true });
      print(o, { name, deleted: true }, () => `node ${name} deleted`);
    });

  node
    .command('service')
    .description('print a systemd unit that runs the node (keyhop node run) and restarts it on failure')
    .argument(
      '<name>',
      'node name (start it once first, or give its --config, so that its configuration is stored)',
    )
    .option('--user <user>', 'the account the node runs as (default: the current one)')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; user?: string }>();
      process.stdout.write(systemdUnit(name, keyhopHome(o.home), o.user ?? userInfo().username));
    });
}

/**
 * A systemd service for node `name`: `keyhop node run` in the foreground (systemd supervises it;
 * SIGTERM stops it cleanly, closing its channels), restarted on failure, after the network is up.
 * Secrets (KEYHOP_VAULT_PASSPHRASE, a PKCS#11 PIN) belong in the EnvironmentFile, mode 0600.
 */
export function systemdUnit(name: string, home: string, user: string): string {
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const quote = (s: string) => (/^[A-Za-z0-9_./:@+-]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, '\\$1')}"`);
  return `# keyhop node "${name}": install with
#   keyhop node service ${name} | sudo tee /etc/systemd/system/keyhop-${name}.service
#   sudo systemctl daemon-reload && sudo systemctl enable --now keyhop-${name}
[Unit]
Description=keyhop node ${name}
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User=${user}
Environment=KEYHOP_HOME=${quote(home)}
# Secrets such as KEYHOP_VAULT_PASSPHRASE=... go here (create it with mode 0600); optional.
EnvironmentFile=-/etc/keyhop/${name}.env
ExecStart=${quote(process.execPath)} ${NODE_PROCESS_V8_FLAGS.join(' ')} ${quote(main)} node run ${name}
Restart=on-failure
RestartSec=2s
KillSignal=SIGTERM
TimeoutStopSec=20s
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`;
}

/**
 * Whether `pid` is a keyhop node process for `name` (not another program that got the pid of a
 * node that died without removing its pid file). Where /proc is missing, a live pid is believed.
 */
async function isNodeProcess(pid: number, name: string): Promise<boolean> {
  if (!processAlive(pid)) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return true;
  const args = cmdline.split('\0');
  return args.includes('node') && args.includes(name) && args.some((a) => a.endsWith('main.js'));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
