import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type NodeConfig, parseNodeConfig } from '../../node/config.js';
import { controlCall } from '../../node/control-client.js';
import { runNodeProcess } from '../../node/node-process.js';
import { keyhopHome, nodePaths } from '../../node/paths.js';
import { print } from '../output.js';

interface StartOptions {
  config?: string;
  tcpListener?: string[];
  udpBind?: string;
  identity?: string;
  authority?: string[];
  trust?: string[];
  policy?: string;
  relayService?: boolean;
  echo?: boolean;
  relayAt?: string;
  relayAlias?: string;
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

/** The config file (if any) with the command-line flags on top. */
async function effectiveConfig(name: string | undefined, o: StartOptions): Promise<NodeConfig> {
  const raw = (o.config ? await readConfigFile(o.config) : {}) as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...raw };
  if (name) merged.name = name;
  if (o.tcpListener?.length)
    merged.tcpListeners = [...((raw.tcpListeners as unknown[]) ?? []), ...o.tcpListener];
  if (o.udpBind) merged.udp = { bind: o.udpBind };
  if (o.identity) merged.identity = o.identity;
  else if (raw.identity === undefined) merged.identity = 'default';
  if (o.authority?.length || o.trust?.length || o.policy) {
    const sc = { ...((raw.secureChannel as Record<string, unknown>) ?? {}) };
    if (o.authority?.length) sc.authorities = [...((sc.authorities as string[]) ?? []), ...o.authority];
    if (o.trust?.length) sc.trustedIdentifiers = [...((sc.trustedIdentifiers as string[]) ?? []), ...o.trust];
    if (o.policy) sc.policy = o.policy;
    merged.secureChannel = sc;
  }
  const services = { ...((raw.services as Record<string, unknown>) ?? {}) };
  if (o.relayService) services.relay = true;
  if (o.echo === false) services.echo = false;
  merged.services = services;
  if (o.relayAt) {
    merged.relays = [
      ...((raw.relays as unknown[]) ?? []),
      { at: o.relayAt, ...(o.relayAlias ? { alias: o.relayAlias } : {}) },
    ];
  }
  if (o.logLevel) merged.log = { level: o.logLevel };
  return parseNodeConfig(merged, { name: 'default' });
}

async function isRunning(control: string): Promise<boolean> {
  try {
    await controlCall(control, 'node.show', {}, 2000);
    return true;
  } catch {
    return false;
  }
}

async function startNode(name: string | undefined, o: StartOptions): Promise<void> {
  const config = await effectiveConfig(name, o);
  const home = keyhopHome(o.home);
  const paths = nodePaths(home, config.name);
  if (await isRunning(paths.control)) {
    throw new KeyhopError(ErrorCodes.NODE_EXISTS, `node "${config.name}" is already running`);
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  if (o.foreground) {
    await runNodeProcess(config, paths, home, (node) => {
      if (o.json) process.stdout.write(`${JSON.stringify({ ready: true, ...node.describe() })}\n`);
      else process.stdout.write(`node ${config.name} running (pid ${process.pid}); Ctrl-C stops it\n`);
    });
    return;
  }
  await writeFile(paths.config, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  const logFd = openSync(paths.log, 'a', 0o600);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(
    process.execPath,
    [main, 'node', 'start', config.name, '--foreground', '--config', paths.config, '--home', home],
    { detached: true, stdio: ['ignore', 'ignore', logFd] },
  );
  closeSync(logFd);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? 1;
  });
  child.unref();
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      const tail = (await readFile(paths.log, 'utf8').catch(() => ''))
        .trim()
        .split('\n')
        .slice(-3)
        .join('\n');
      throw new KeyhopError(
        ErrorCodes.CONTROL_FAILED,
        `node "${config.name}" exited during start-up:\n${tail}`,
      );
    }
    try {
      const info = (await controlCall(paths.control, 'node.show', {}, 1000)) as Record<string, unknown>;
      print(o, info, (d) => `node ${d.name} started (pid ${d.pid}); logs: ${paths.log}`);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new KeyhopError(ErrorCodes.TIMEOUT, `node "${config.name}" did not become ready; see ${paths.log}`);
}

function describeNode(d: Record<string, unknown>): string {
  const lines = [`node ${d.name} (pid ${d.pid}, since ${d.startedAt})`];
  lines.push(`  services:   ${(d.services as string[]).join(', ') || '-'}`);
  for (const l of d.tcpListeners as { route: string }[]) lines.push(`  listener:   ${l.route}`);
  const udp = d.udp as { route: string; peers: number } | null;
  if (udp) lines.push(`  udp:        ${udp.route} (${udp.peers} peers)`);
  for (const c of d.tcpConnections as { peer: string; direction: string; sender: string }[]) {
    lines.push(`  connection: ${c.direction} ${c.peer} (route via ${c.sender})`);
  }
  for (const r of d.relays as { name: string | null; at: string; state: string; route: string | null }[]) {
    lines.push(
      `  relay:      ${r.name ?? '?'} at ${r.at} [${r.state}]${r.route ? ` reachable as ${r.route}` : ''}`,
    );
  }
  if (d.identity) lines.push(`  identity:   ${d.identity}`);
  if (d.secureChannelListener) lines.push(`  channels:   listener ${d.secureChannelListener}`);
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
  for (const i of d.inlets as { address: string; to: string }[])
    lines.push(`  inlet:      ${i.address} -> ${i.to}`);
  for (const r of d.relaysHosted as { name: string; forwarded: number }[]) {
    lines.push(`  hosting:    ${r.name} (${r.forwarded} forwarded)`);
  }
  return lines.join('\n');
}

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description('start, stop and inspect keyhop nodes');
  const collect = (v: string, prev: string[] = []) => [...prev, v];

  node
    .command('start')
    .description('start a node (in the background unless --foreground)')
    .argument('[name]', 'node name', undefined)
    .option('--config <file>', 'JSON node config (see docs/cli.md)')
    .option('--tcp-listener <host:port>', 'listen for TCP on host:port (repeatable)', collect)
    .option('--udp-bind <host:port>', 'open a UDP socket on host:port (2#… routes)')
    .option('--identity <name>', 'identity in KEYHOP_HOME (created if missing; default "default")')
    .option(
      '--authority <identity>',
      'trusted credential authority: identity name or change history hex (repeatable)',
      collect,
    )
    .option('--trust <identifier>', 'accept secure channels only from this identifier (repeatable)', collect)
    .option(
      '--policy <expression>',
      'accept secure channels only from peers whose credentials satisfy this ABAC policy',
    )
    .option('--relay-service', 'run the relay service (forwarding_service)')
    .option('--no-echo', 'do not run the echo service')
    .option('--relay-at <route>', 'register a relay for this node at the node at <route>')
    .option('--relay-alias <alias>', 'stable relay name for --relay-at')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--foreground', 'run in this process until Ctrl-C')
    .option('--json', 'machine-readable output')
    .action(async (name: string | undefined, _o, cmd: Command) => {
      await startNode(name, cmd.optsWithGlobals<StartOptions>());
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
      } catch (e) {
        if (!pid || !processAlive(pid))
          throw new KeyhopError(ErrorCodes.NODE_NOT_RUNNING, `node "${name}" is not running`);
        process.kill(pid, 'SIGTERM');
        void e;
      }
      const deadline = Date.now() + 10_000;
      while (pid && processAlive(pid) && Date.now() < deadline) await sleep(50);
      if (pid && processAlive(pid))
        throw new KeyhopError(ErrorCodes.TIMEOUT, `node "${name}" (pid ${pid}) did not stop`);
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
    .command('show')
    .description('show listeners, connections, relays and counters of a running node')
    .argument('<name>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean }>();
      const info = (await controlCall(nodePaths(keyhopHome(o.home), name).control, 'node.show')) as Record<
        string,
        unknown
      >;
      print(o, info, describeNode);
    });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
