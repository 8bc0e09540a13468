/**
 * The attacker of the attack benchmark (bench/attack.ts), in its own process so that its event
 * loop is neither the victim's nor the well-behaved clients'. Started by `AttackerProcess` with
 * its job as JSON in argv[2]; talks to the parent over IPC:
 *
 * - child -> parent: `{type: 'started', counters}` once the attack is running (a flood writing,
 *   the half-open handshakes sent, the channels open), `{type: 'counters', counters}` when asked,
 *   `{type: 'stopped', counters}` after a stop, `{type: 'failed', error}`;
 * - parent -> child: `{type: 'counters'}`, `{type: 'stop'}` (then the child exits).
 *
 * The channel flood is meant to be killed (SIGKILL) or frozen (SIGSTOP) by the parent, not stopped.
 */

import type { Socket } from 'node:net';
import type { SecureChannelEnd } from '../runtime/channel/secure-channel.js';
import { describeError, isKeyhopError } from '../runtime/errors.js';
import { Message } from '../runtime/routing/message.js';
import { Route } from '../runtime/routing/route.js';
import { type ClientNode, clientNode, failureCode } from './attack-clients.js';
import { countReplies, FloodConnection, firstMessagePool, rawConnect } from './attack-wire.js';

/** What the parent asks the child to do. */
export type AttackJob =
  | {
      kind: 'first-message-flood';
      victim: string;
      source: string;
      connections: number;
      poolSize: number;
    }
  | {
      kind: 'half-open';
      victim: string;
      sources: string[];
      count: number;
      connectionsPerSource: number;
    }
  | {
      kind: 'channel-flood';
      victim: string;
      source: string;
      identities: number;
      perIdentity: number;
      concurrency: number;
      timeoutMs: number;
    }
  | {
      kind: 'flooding-channel';
      victim: string;
      source: string;
      payloadBytes: number;
      window: number;
      timeoutMs: number;
    };

export type AttackCounters = Record<string, number | string | Record<string, number>>;

export type ChildMessage =
  | { type: 'started'; counters: AttackCounters }
  | { type: 'counters'; counters: AttackCounters }
  | { type: 'stopped'; counters: AttackCounters }
  | { type: 'failed'; error: string };

interface Attack {
  counters(): AttackCounters;
  stop(): Promise<void>;
}

function send(m: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) resolve();
    else process.send(m, () => resolve());
  });
}

async function firstMessageFlood(job: Extract<AttackJob, { kind: 'first-message-flood' }>): Promise<Attack> {
  const t0 = performance.now();
  const pool = firstMessagePool(job.poolSize);
  const poolMs = performance.now() - t0;
  const conns = Array.from(
    { length: job.connections },
    (_, i) =>
      new FloodConnection(
        job.victim,
        job.source,
        pool,
        Math.floor((i * pool.chunks.length) / job.connections),
      ),
  );
  for (const c of conns) c.start();
  const startedAt = performance.now();
  return {
    counters() {
      const sum = { framesSent: 0, repliesReceived: 0, bytesWritten: 0, closedByPeer: 0, connectFailures: 0 };
      for (const c of conns) {
        const k = c.counters();
        sum.framesSent += k.framesSent;
        sum.repliesReceived += k.repliesReceived;
        sum.bytesWritten += k.bytesWritten;
        sum.closedByPeer += k.closedByPeer;
        sum.connectFailures += k.connectFailures;
      }
      return {
        ...sum,
        connections: job.connections,
        distinctFrames: pool.frames,
        frameBytes: pool.frameBytes,
        poolMs: Math.round(poolMs),
        floodMs: Math.round(performance.now() - startedAt),
      };
    },
    async stop() {
      await Promise.all(conns.map((c) => c.stop()));
    },
  };
}

async function halfOpen(job: Extract<AttackJob, { kind: 'half-open' }>): Promise<Attack> {
  const pool = firstMessagePool(job.count, 1);
  const sockets: Socket[] = [];
  let replies = 0;
  let closedByPeer = 0;
  let stopping = false;
  for (const source of job.sources) {
    for (let k = 0; k < job.connectionsPerSource; k++) {
      const s = await rawConnect(job.victim, source);
      countReplies(s, () => replies++);
      s.once('close', () => {
        if (!stopping) closedByPeer++;
      });
      sockets.push(s);
    }
  }
  // Frame i goes over connection i mod n: every source gets its share.
  const perSocket: Buffer[][] = sockets.map(() => []);
  for (const [i, frame] of pool.chunks.entries()) perSocket[i % sockets.length]!.push(frame);
  await Promise.all(
    sockets.map(
      (s, i) =>
        new Promise<void>((resolve) => {
          s.write(Buffer.concat(perSocket[i]!), () => resolve());
        }),
    ),
  );
  return {
    counters: () => ({
      framesSent: job.count,
      repliesReceived: replies,
      sources: job.sources.length,
      connections: sockets.length,
      connectionsOpen: sockets.filter((s) => !s.destroyed).length,
      closedByPeer,
    }),
    async stop() {
      stopping = true;
      for (const s of sockets) s.destroy();
    },
  };
}

async function channelFlood(job: Extract<AttackJob, { kind: 'channel-flood' }>): Promise<Attack> {
  const nodes: ClientNode[] = [];
  for (let i = 0; i < job.identities; i++) nodes.push(await clientNode(`flood-${i}`, job.source));
  const route = `1#${job.victim} => api`;
  const ends: SecureChannelEnd[] = [];
  const failures: Record<string, number> = {};
  let refusedLimit = 0;
  let attempted = 0;
  const t0 = performance.now();
  const perIdentity = Math.max(1, Math.floor(job.concurrency / job.identities));
  await Promise.all(
    nodes.flatMap((n) =>
      Array.from({ length: perIdentity }, async (_, lane) => {
        for (let k = lane; k < job.perIdentity; k += perIdentity) {
          attempted++;
          try {
            ends.push(await n.channels.create(route, { timeoutMs: job.timeoutMs }));
          } catch (e) {
            if (isKeyhopError(e, 'CHANNEL_LIMIT')) refusedLimit++;
            const code = failureCode(e);
            failures[code] = (failures[code] ?? 0) + 1;
          }
        }
      }),
    ),
  );
  const openMs = performance.now() - t0;
  return {
    counters: () => ({
      attempted,
      opened: ends.length,
      refusedLimit,
      failures,
      identities: job.identities,
      openMs: Math.round(openMs),
      channelsPerSec: Math.round((ends.length / openMs) * 1000),
    }),
    async stop() {
      for (const n of nodes) await n.router.shutdown();
    },
  };
}

async function floodingChannel(job: Extract<AttackJob, { kind: 'flooding-channel' }>): Promise<Attack> {
  const node = await clientNode('flooder', job.source);
  const end = await node.channels.create(`1#${job.victim} => api`, { timeoutMs: job.timeoutMs });
  let echoed = 0;
  let sent = 0;
  let sendFailures = 0;
  const ctx = await node.router.startWorker('flood_sink', { handleMessage: () => void echoed++ });
  const payload = new Uint8Array(job.payloadBytes);
  let running = true;
  const t0 = performance.now();
  // Sends that really wait: at most `window` messages handed to the router and not yet taken by
  // the next hop (the channel, then the TCP connection, which waits for its socket to drain).
  const loop = (async () => {
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const done = (e?: unknown) => {
      inFlight--;
      if (e) sendFailures++;
      wake?.();
      wake = undefined;
    };
    while (running) {
      if (inFlight >= job.window) {
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      inFlight++;
      sent++;
      node.router.post(
        ctx.address,
        new Message(Route.of(end.encryptor, 'echo'), Route.of(ctx.address), payload),
        done,
      );
      if (sent % 256 === 0) await new Promise((r) => setImmediate(r));
    }
    while (inFlight > 0) {
      await new Promise<void>((r) => {
        wake = r;
      });
    }
  })();
  return {
    counters: () => ({
      messagesSent: sent,
      echoesReceived: echoed,
      sendFailures,
      payloadBytes: job.payloadBytes,
      floodMs: Math.round(performance.now() - t0),
    }),
    async stop() {
      running = false;
      await loop;
      await node.router.shutdown();
    },
  };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as AttackJob;
  let attack: Attack;
  switch (job.kind) {
    case 'first-message-flood':
      attack = await firstMessageFlood(job);
      break;
    case 'half-open':
      attack = await halfOpen(job);
      break;
    case 'channel-flood':
      attack = await channelFlood(job);
      break;
    case 'flooding-channel':
      attack = await floodingChannel(job);
      break;
    default:
      throw new Error(`unknown attack job ${JSON.stringify(job)}`);
  }
  await send({ type: 'started', counters: attack.counters() });
  process.on('message', (m: { type?: string }) => {
    if (m.type === 'counters') send({ type: 'counters', counters: attack.counters() });
    else if (m.type === 'stop') {
      void attack.stop().then(
        async () => {
          await send({ type: 'stopped', counters: attack.counters() });
          process.exit(0);
        },
        async (e: unknown) => {
          await send({ type: 'failed', error: describeError(e) });
          process.exit(1);
        },
      );
    }
  });
  // The parent went away: so does the attacker.
  process.on('disconnect', () => process.exit(0));
}

main().catch(async (e: unknown) => {
  await send({ type: 'failed', error: e instanceof Error ? (e.stack ?? e.message) : describeError(e) });
  process.exit(1);
});
