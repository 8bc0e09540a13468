import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../support/cli.js';
import { rigSkipReason, stopChild, untilListening } from './daemon.js';

/**
 * A real MQTT broker for tests: Debian's mosquitto 2.0 on a free loopback port, with its own
 * config and persistence directory, stopped by pid (research brokers.md §3: as root it must be
 * told to stay root, or it cannot write its own database).
 */
export interface MosquittoOptions {
  /** mosquitto's max_queued_messages (its default, 1000, drops the rest silently after PUBACK). */
  maxQueuedMessages?: number;
  /** Users and passwords (a password file); anonymous clients are refused when given. */
  users?: Record<string, string>;
  /** ACL file lines (with users). */
  acl?: string[];
  /** TLS listener: PEM paths; `requireCertificate` asks clients for one signed by `ca`. */
  tls?: { ca: string; cert: string; key: string; requireCertificate?: boolean };
}

export interface Mosquitto {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** SIGTERM (saves its database) or SIGKILL (a crash: what was not autosaved is gone). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port with the same database. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  dispose(): Promise<void>;
  log(): string;
}

export function mosquittoSkipReason(): string | undefined {
  const missing: string[] = [];
  // `mosquitto -h` exits non-zero; that it runs at all is the point.
  if (spawnSync('mosquitto', ['-h']).error !== undefined) {
    missing.push('mosquitto (apt-get install mosquitto)');
  }
  return rigSkipReason(missing, 'the mosquitto rig');
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'keyhop-mosquitto-'));
  let port = await freePort();
  const lines = [
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1800',
    `max_queued_messages ${options.maxQueuedMessages ?? 1000}`,
    'max_inflight_messages 100',
    // mosquitto's default leaves Nagle on: a request and its reply then wait on delayed ACKs (~40 ms).
    'set_tcp_nodelay true',
    // As root it drops to the mosquitto user, which cannot write this directory.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    `log_dest file ${dir}/mosquitto.log`,
    'log_type error',
    'log_type warning',
    'log_type notice',
  ];
  if (options.users) {
    const pw = join(dir, 'passwords');
    writeFileSync(pw, '');
    for (const [user, password] of Object.entries(options.users)) {
      const r = spawnSync('mosquitto_passwd', ['-b', pw, user, password]);
      if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
    }
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else {
    lines.push('allow_anonymous true');
  }
  if (options.acl) {
    writeFileSync(join(dir, 'acl'), `${options.acl.join('\n')}\n`);
    lines.push(`acl_file ${join(dir, 'acl')}`);
  }
  if (options.tls) {
    lines.push(`cafile ${options.tls.ca}`, `certfile ${options.tls.cert}`, `keyfile ${options.tls.key}`);
    if (options.tls.requireCertificate) lines.push('require_certificate true');
  }
  const conf = join(dir, 'mosquitto.conf');
  const writeConf = () => writeFileSync(conf, `listener ${port} 127.0.0.1\n${lines.join('\n')}\n`);
  writeConf();
  let child: ChildProcess | undefined;
  const logText = () => {
    try {
      return readFileSync(join(dir, 'mosquitto.log'), 'utf8') + readFileSync(join(dir, 'stderr'), 'utf8');
    } catch {
      return '';
    }
  };
  const start = async () => {
    mkdirSync(dir, { recursive: true });
    const err = openSync(join(dir, 'stderr'), 'a');
    child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', err, err] });
    closeSync(err);
    // Owned: on a restart, a parallel test may have taken the port mosquitto just freed.
    await untilListening(child, port, () => logText().slice(-800), true);
  };
  // Another process of the machine (a parallel test) may take the port between choosing it and
  // mosquitto binding it: mosquitto then exits, and a new port is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (e) {
      if (attempt >= 3 || !/Address already in use/i.test(logText())) throw e;
      port = await freePort();
      writeConf();
    }
  }
  return {
    url: `${options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid ?? 0;
    },
    stop: async (signal = 'SIGTERM') => {
      if (child) await stopChild(child, signal);
    },
    restart: start,
    dispose: async () => {
      if (child) await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
    log: logText,
  };
}
