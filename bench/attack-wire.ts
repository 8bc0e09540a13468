/**
 * Raw hostile TCP peers for the attack benchmark (bench/attack.ts): pre-encoded secure-channel
 * first messages, a connection that writes them as fast as the socket takes them, half-open
 * handshakes, and a frame-aware TCP proxy that copies, replays, flips and re-addresses a channel's
 * frames. Nothing here is keyhop's own networking: these are plain `node:net` sockets speaking
 * keyhop's TCP framing (docs/protocols/tcp.md) by hand, as an attacker would.
 */

import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { generateDhKey } from '../runtime/channel/noise/dh-key.js';
import { ockamHandshake } from '../runtime/channel/ockam-xx.js';
import { Address } from '../runtime/routing/address.js';
import { decodeCborFrame, encodeCborFrame } from '../runtime/routing/codec/cbor-frame.js';
import { Message } from '../runtime/routing/message.js';
import { Route } from '../runtime/routing/route.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { PlainFrameSplitter } from './support.js';

/** keyhop's TCP protocol-version byte, sent first by both ends of a connection. */
export const TCP_VERSION = 0x01;

/** u32-BE length ‖ body. */
export function tcpFrame(body: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}

/**
 * One secure-channel message 1 to `listener`, framed for TCP: a fresh ephemeral key (the Noise
 * engine makes one per handshake) and a return route of one distinct random address, so that no
 * two frames of a pool look alike to the victim.
 */
export function firstMessageFrame(listener = 'api'): Buffer {
  const hs = ockamHandshake(nodeCrypto, true, generateDhKey(nodeCrypto, '25519'));
  const m1 = hs.writeMessage();
  const back = Route.of(`sc_remote_${randomBytes(16).toString('hex')}`);
  return tcpFrame(encodeCborFrame(new Message(Route.of(listener), back, m1)));
}

/**
 * `count` distinct first-message frames, concatenated into chunks of `perChunk` frames (one
 * socket write each). Every frame has the same length (a 32-byte ephemeral key, a fixed-length
 * address), returned as `frameBytes`, so bytes written count frames.
 */
export function firstMessagePool(
  count: number,
  perChunk = 256,
): { chunks: Buffer[]; frameBytes: number; frames: number } {
  const chunks: Buffer[] = [];
  let frameBytes = 0;
  for (let done = 0; done < count; ) {
    const n = Math.min(perChunk, count - done);
    const frames: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const f = firstMessageFrame();
      if (frameBytes === 0) frameBytes = f.length;
      else if (f.length !== frameBytes) throw new Error('first-message frames differ in length');
      frames.push(f);
    }
    chunks.push(Buffer.concat(frames));
    done += n;
  }
  return { chunks, frameBytes, frames: count };
}

/** A TCP connection to `address` (`host:port`) from `localAddress`, after our version byte. */
export function rawConnect(address: string, localAddress: string, timeoutMs = 10_000): Promise<Socket> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, localAddress });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connecting to ${address} from ${localAddress} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', reject);
      s.setNoDelay(true);
      s.on('error', () => undefined);
      s.write(Buffer.of(TCP_VERSION));
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Reads whatever a raw peer's socket receives and counts the frames in it (after the peer's
 * version byte); nothing is kept. A stream that stops making sense is just counted as bytes.
 */
export function countReplies(socket: Socket, onFrame: () => void): void {
  let versionSeen = false;
  let broken = false;
  const splitter = new PlainFrameSplitter(() => onFrame());
  socket.on('data', (chunk: Buffer) => {
    let c = chunk;
    if (!versionSeen && c.length > 0) {
      versionSeen = true;
      c = c.subarray(1);
    }
    if (broken || c.length === 0) return;
    try {
      splitter.push(c);
    } catch {
      broken = true;
    }
  });
}

/** What one flooding connection did. */
export interface FloodCounters {
  /** Bytes handed to the kernel (socket.bytesWritten), over all connections made. */
  bytesWritten: number;
  framesSent: number;
  repliesReceived: number;
  /** Connections the victim (or anything else) closed under us; each is re-opened. */
  closedByPeer: number;
  connectFailures: number;
}

/**
 * Writes the pool's chunks in a cycle, as fast as the socket drains, until `stop()`. Reconnects
 * when the connection closes. Frames sent = whole frames the kernel took.
 */
export class FloodConnection {
  private socket: Socket | undefined;
  private running = true;
  private bytesDone = 0;
  private replies = 0;
  private closed = 0;
  private connectFailures = 0;
  private next = 0;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly address: string,
    private readonly localAddress: string,
    private readonly pool: { chunks: Buffer[]; frameBytes: number },
    offset: number,
  ) {
    this.next = offset % pool.chunks.length;
  }

  start(): void {
    this.loop = this.run();
  }

  counters(): FloodCounters {
    const current = this.socket ? Math.max(0, this.socket.bytesWritten - 1) : 0;
    const bytes = this.bytesDone + current;
    return {
      bytesWritten: bytes,
      framesSent: Math.floor(bytes / this.pool.frameBytes),
      repliesReceived: this.replies,
      closedByPeer: this.closed,
      connectFailures: this.connectFailures,
    };
  }

  async stop(): Promise<void> {
    this.running = false;
    this.socket?.destroy();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let s: Socket;
      try {
        s = await rawConnect(this.address, this.localAddress);
      } catch {
        this.connectFailures++;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (!this.running) {
        s.destroy();
        break;
      }
      this.socket = s;
      countReplies(s, () => this.replies++);
      await this.pump(s);
      this.bytesDone += Math.max(0, s.bytesWritten - 1);
      this.socket = undefined;
      if (this.running) this.closed++;
    }
  }

  /** Writes until the socket closes or the flood stops. */
  private pump(s: Socket): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve();
      };
      s.once('close', finish);
      const write = () => {
        while (this.running && !s.destroyed) {
          const chunk = this.pool.chunks[this.next]!;
          this.next = (this.next + 1) % this.pool.chunks.length;
          if (!s.write(chunk)) {
            s.once('drain', write);
            return;
          }
        }
        if (!this.running) s.destroy();
      };
      write();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// a frame-aware proxy

/** Which way a frame travels through the proxy. */
export type ProxyDirection = 'toVictim' | 'toClient';

/**
 * What the proxy does with a frame it read: forward it as it is (`forward`), drop it, or forward
 * these frames instead (any number; each a body, without the length prefix).
 */
export type FrameVerdict = 'forward' | 'drop' | Uint8Array[];

/**
 * A TCP proxy that understands keyhop's framing: the client connects to `address`, the proxy
 * connects to the victim from `localAddress` and passes the version byte and every frame on,
 * asking `onFrame` what to do with each (default: forward). `inject` writes extra frames on the
 * victim's side of the latest connection.
 */
export class FrameProxy {
  onFrame: (direction: ProxyDirection, body: Buffer) => FrameVerdict = () => 'forward';
  readonly pairs: { client: Socket; victim: Socket }[] = [];
  private server: Server | undefined;
  address = '';

  constructor(
    private readonly victim: string,
    private readonly localAddress: string,
  ) {}

  async listen(host = '127.0.0.1'): Promise<string> {
    const server = createServer((client) => void this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address();
    if (a === null || typeof a === 'string') throw new Error('proxy has no TCP address');
    this.address = `${host}:${a.port}`;
    return this.address;
  }

  /** Writes frame bodies to the victim over the most recent connection. */
  inject(bodies: readonly Uint8Array[]): void {
    const pair = this.pairs[this.pairs.length - 1];
    if (!pair) throw new Error('the proxy has no connection yet');
    for (const b of bodies) pair.victim.write(tcpFrame(b));
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.victim.destroy();
    }
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async accept(client: Socket): Promise<void> {
    client.on('error', () => undefined);
    client.pause();
    const i = this.victim.lastIndexOf(':');
    const victim = connect({
      host: this.victim.slice(0, i),
      port: Number(this.victim.slice(i + 1)),
      localAddress: this.localAddress,
    });
    victim.on('error', () => undefined);
    victim.setNoDelay(true);
    client.setNoDelay(true);
    this.pairs.push({ client, victim });
    client.once('close', () => victim.destroy());
    victim.once('close', () => client.destroy());
    this.pipe(client, victim, 'toVictim');
    this.pipe(victim, client, 'toClient');
    client.resume();
  }

  private pipe(from: Socket, to: Socket, direction: ProxyDirection): void {
    let versionSeen = false;
    const splitter = new PlainFrameSplitter((body) => {
      // The splitter may hand out a view into the chunk: copy before keeping or re-sending.
      const copy = Buffer.from(body);
      const verdict = this.onFrame(direction, copy);
      if (verdict === 'forward') to.write(tcpFrame(copy));
      else if (verdict !== 'drop') for (const b of verdict) to.write(tcpFrame(b));
    });
    from.on('data', (chunk: Buffer) => {
      let c = chunk;
      if (!versionSeen && c.length > 0) {
        versionSeen = true;
        to.write(c.subarray(0, 1));
        c = c.subarray(1);
      }
      if (c.length === 0) return;
      try {
        splitter.push(c);
      } catch {
        from.destroy();
      }
    });
  }
}

/** The first onward address of a frame body (the worker it is for on the receiving node). */
export function frameTarget(body: Uint8Array): string | undefined {
  try {
    return decodeCborFrame(body).onward.next?.toString();
  } catch {
    return undefined;
  }
}

/**
 * The same frame with one bit of its payload flipped (the routing header is left whole, so the
 * victim's TCP layer reads the frame and hands it to the channel). `bit` picks the bit; the
 * payload is the last part of the frame (docs/protocols/routing-message.md).
 */
export function flipPayloadBit(body: Uint8Array, bit: number): Uint8Array {
  const m = decodeCborFrame(body);
  const n = m.payload.length;
  if (n === 0) throw new Error('frame has no payload to flip');
  const out = new Uint8Array(body);
  const k = bit % (n * 8);
  const at = out.length - n + (k >> 3);
  out[at] = out[at]! ^ (1 << (k & 7));
  return out;
}

/** The same frame sent to another worker on the victim (its first onward address replaced). */
export function readdress(body: Uint8Array, target: string): Uint8Array {
  const m = decodeCborFrame(body);
  return encodeCborFrame(new Message(m.onward.replaceNext(Address.parse(target)), m.returnRoute, m.payload));
}
