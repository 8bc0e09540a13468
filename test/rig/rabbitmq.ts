import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { freePorts } from '../support/cli.js';
import { exited, rigSkipReason, stopChild } from './daemon.js';

/**
 * A three-node RabbitMQ cluster with the MQTT plugin, on loopback, as research brokers.md §1 ran
 * it: Debian's rabbitmq-server 3.10 started through its real script (the wrapper would `su` to the
 * rabbitmq user), one Erlang cookie in a private HOME, quorum queues for durable MQTT sessions
 * (the classic default loses acknowledged messages when a node dies), pause_minority. Each node is
 * stopped by pid; `kill(n)` is a crash (SIGKILL of its Erlang VM).
 */
const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const CTL = '/usr/lib/rabbitmq/bin/rabbitmqctl';
const run = promisify(execFile);

export interface RabbitNode {
  readonly name: string;
  readonly mqttPort: number;
  readonly url: string;
  alive(): boolean;
}

export interface RabbitCluster {
  readonly nodes: RabbitNode[];
  /** Crash node `i` (SIGKILL of its VM). */
  kill(i: number): Promise<void>;
  /** Stops every node and removes the directory. */
  dispose(): Promise<void>;
  log(i: number): string;
}

export function rabbitmqSkipReason(): string | undefined {
  const missing: string[] = [];
  if (!existsSync(SERVER) || !existsSync(CTL))
    missing.push('rabbitmq-server (apt-get install rabbitmq-server)');
  return rigSkipReason(missing, 'the RabbitMQ cluster rig');
}

interface NodeProcess {
  name: string;
  child: ChildProcess;
  dir: string;
  env: NodeJS.ProcessEnv;
  mqttPort: number;
}

/** Node names unique to this cluster: two rigs (two test runs) may share the machine's epmd. */
function nodeName(root: string, n: number): string {
  return `rabbit${n}-${basename(root).replace(/[^A-Za-z0-9]/g, '')}@localhost`;
}

function nodeEnv(root: string, n: number, ports: { amqp: number; dist: number }): NodeJS.ProcessEnv {
  const dir = join(root, `n${n}`);
  return {
    ...process.env,
    HOME: join(root, 'home'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ERL_EPMD_PORT: process.env.KEYHOP_RIG_EPMD_PORT ?? '4369',
    RABBITMQ_NODENAME: nodeName(root, n),
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(ports.amqp),
    RABBITMQ_DIST_PORT: String(ports.dist),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONF_ENV_FILE: '/dev/null',
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
}

async function ctl(env: NodeJS.ProcessEnv, node: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(CTL, ['-n', node, ...args], { env, timeout: 60_000 });
  return stdout;
}

/** Polls `rabbitmqctl await_startup` (it fails while the node is not yet registered with epmd). */
async function awaitStartup(p: NodeProcess): Promise<void> {
  const deadline = Date.now() + 180_000;
  let last = '';
  for (;;) {
    if (exited(p.child)) throw new Error(`${p.name} exited: ${readLogs(p.dir).slice(-1500)}`);
    try {
      await ctl(p.env, p.name, 'await_startup', '--timeout', '30');
      return;
    } catch (e) {
      last = String((e as { stderr?: string }).stderr ?? e);
    }
    if (Date.now() > deadline) throw new Error(`${p.name} did not start within 180 s: ${last.slice(-800)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function readLogs(dir: string): string {
  const out = join(dir, 'stdout');
  return existsSync(out) ? readFileSync(out, 'utf8') : '';
}

export async function startRabbitCluster(): Promise<RabbitCluster> {
  const root = mkdtempSync(join(tmpdir(), 'keyhop-rabbit-'));
  mkdirSync(join(root, 'home'), { recursive: true });
  const cookie = join(root, 'home', '.erlang.cookie');
  writeFileSync(cookie, `KEYHOPRIG${Math.random().toString(36).slice(2).toUpperCase()}`, { mode: 0o400 });
  const ports = await freePorts(9);
  const procs: NodeProcess[] = [];
  try {
    for (let n = 1; n <= 3; n++) {
      const dir = join(root, `n${n}`);
      mkdirSync(dir, { recursive: true });
      const amqp = ports[n - 1]!;
      const dist = ports[2 + n]!;
      const mqttPort = ports[5 + n]!;
      writeFileSync(
        join(dir, 'rabbitmq.conf'),
        [
          `listeners.tcp.default = 127.0.0.1:${amqp}`,
          `mqtt.listeners.tcp.default = 127.0.0.1:${mqttPort}`,
          'mqtt.durable_queue_type = quorum',
          // The default prefetch of 10 delivers QoS 1 far slower than it accepts it (brokers.md §4).
          'mqtt.prefetch = 500',
          'mqtt.allow_anonymous = true',
          'cluster_partition_handling = pause_minority',
          'log.console = true',
          'log.console.level = warning',
        ].join('\n'),
      );
      writeFileSync(join(dir, 'enabled_plugins'), '[rabbitmq_mqtt].\n');
      const env = nodeEnv(root, n, { amqp, dist });
      const out = openSync(join(dir, 'stdout'), 'a');
      // Its own process group: the script leaves the Erlang VM running as a grandchild, which a
      // kill of the group reaches.
      const child = spawn(SERVER, [], { env, stdio: ['ignore', out, out], detached: true });
      closeSync(out);
      procs.push({ name: nodeName(root, n), child, dir, env, mqttPort });
    }
    await Promise.all(procs.map((p) => awaitStartup(p)));
    for (const p of procs.slice(1)) {
      await ctl(p.env, p.name, 'stop_app');
      await ctl(p.env, p.name, 'join_cluster', procs[0]!.name);
      await ctl(p.env, p.name, 'start_app');
    }
    await Promise.all(procs.map((p) => awaitStartup(p)));
  } catch (e) {
    for (const p of procs) await stopChild(p.child, 'SIGKILL');
    await stopEpmd(root);
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
  return {
    nodes: procs.map((p) => ({
      name: p.name,
      mqttPort: p.mqttPort,
      url: `mqtt://127.0.0.1:${p.mqttPort}`,
      alive: () => !exited(p.child),
    })),
    kill: async (i) => {
      await killVm(procs[i]!);
    },
    dispose: async () => {
      for (const p of procs) await killVm(p);
      await stopEpmd(root);
      rmSync(root, { recursive: true, force: true });
    },
    log: (i) => readLogs(procs[i]!.dir),
  };
}

/** The script runs the Erlang VM as its grandchild: kill the node's whole process group. */
async function killVm(p: NodeProcess): Promise<void> {
  const pid = p.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
  // The VM reports its death to epmd asynchronously: wait until the name is free again.
  const short = p.name.split('@')[0]!;
  for (let i = 0; i < 100; i++) {
    try {
      const { stdout } = await run('epmd', ['-names'], { env: p.env });
      if (!new RegExp(`name ${short} at port`).test(stdout)) break;
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!exited(p.child)) await stopChild(p.child, 'SIGKILL');
}

async function stopEpmd(root: string): Promise<void> {
  // epmd outlives the nodes; it is shared by every Erlang program of the machine, so it stays
  // unless this rig started it (no other node registered).
  try {
    const { stdout } = await run('epmd', ['-names'], { env: { ...process.env, HOME: join(root, 'home') } });
    if (!/name \S+ at port/.test(stdout)) await run('epmd', ['-kill']);
  } catch {
    // not running
  }
}
