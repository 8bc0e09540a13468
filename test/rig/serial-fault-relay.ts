import { SerialPort } from 'serialport';
import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import { fixHangupRead, fixPollerEventMask } from '../../runtime/transports/serial/serial-transport.js';
import { type SocatPair, startSocatPair } from './socat.js';

/**
 * A serial line with a fault-injecting relay in the middle, for tests and benchmarks:
 *
 *   endpoint ── a ⇄ socat pair A ⇄ relay ⇄ socat pair B ⇄ b ── endpoint
 *
 * The relay opens the inner ends of two socat PTY pairs with the real serialport binding and
 * copies bytes both ways. Optionally it paces each direction at a baud rate (8N1: baud / 10
 * bytes/s; PTYs themselves run at memory speed) and corrupts bytes from a seeded PRNG: bit flips,
 * dropped bytes, duplicated bytes and inserted runs of random garbage. It counts what it did.
 */

/** Per-byte probabilities, each in 0..1. */
export interface FaultRates {
  /** Flip one random bit of the byte. */
  bitFlip?: number;
  /** Drop the byte. */
  drop?: number;
  /** Send the byte twice. */
  duplicate?: number;
  /** Insert 1..garbageMaxBytes random bytes (zeros included) before the byte. */
  garbage?: number;
  /** Longest garbage run. Default 16. */
  garbageMaxBytes?: number;
}

export type RelayDirection = 'aToB' | 'bToA';

export interface RelayCounts {
  /** Bytes read from the sending side. */
  bytesIn: number;
  /** Bytes written to the receiving side (faults included). */
  bytesOut: number;
  bitFlips: number;
  drops: number;
  duplicates: number;
  garbageRuns: number;
  garbageBytes: number;
  /** Bytes read and not yet written (pacing). */
  queuedBytes: number;
}

export interface FaultRelayOptions {
  /** Pace both directions at this baud rate (8N1). Default: no pacing. */
  baudRate?: number;
  /** PRNG seed; each direction draws from its own stream. Default 1. */
  seed?: number;
  /** Faults on bytes the endpoint at `a` sends to `b`. Default none. */
  aToB?: FaultRates;
  /** Faults on bytes the endpoint at `b` sends to `a`. Default none. */
  bToA?: FaultRates;
  /** Keep a copy of every byte written in each direction (see `captured`). Default false. */
  capture?: boolean;
  /**
   * Paced bytes the relay holds per direction before it stops reading from the sender, which then
   * backs up through socat into the sender's own port, as a real UART's transmit buffer would.
   * Default 4096.
   */
  maxQueuedBytes?: number;
}

export interface FaultRelay {
  /** Path for one endpoint (the outer end of pair A). */
  readonly a: string;
  /** Path for the other endpoint (the outer end of pair B). */
  readonly b: string;
  /** socat pids of pair A and pair B. */
  readonly pids: readonly [number, number];
  readonly baudRate: number | undefined;
  stats(): Record<RelayDirection, RelayCounts>;
  /** Replaces the fault rates of one direction from now on. */
  setFaults(direction: RelayDirection, rates: FaultRates): void;
  /** Everything written in `direction` so far (needs `capture`). */
  captured(direction: RelayDirection): Buffer;
  /** Closes the relay's ports, kills both socats by pid and removes their links. Idempotent. */
  stop(): Promise<void>;
}

/** mulberry32: small, fast and good enough to place faults. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkRates(rates: FaultRates): Required<FaultRates> {
  const r = {
    bitFlip: rates.bitFlip ?? 0,
    drop: rates.drop ?? 0,
    duplicate: rates.duplicate ?? 0,
    garbage: rates.garbage ?? 0,
    garbageMaxBytes: rates.garbageMaxBytes ?? 16,
  };
  for (const [k, v] of Object.entries(r)) {
    const ok = k === 'garbageMaxBytes' ? Number.isInteger(v) && v >= 1 : v >= 0 && v <= 1;
    if (!ok) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `fault relay: bad ${k} ${v}`);
  }
  return r;
}

function openPort(path: string): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: 115_200, autoOpen: false });
  return new Promise((resolve, reject) => {
    port.open((err) => {
      if (err) {
        reject(
          new KeyhopError(ErrorCodes.CONNECT_FAILED, `fault relay: cannot open ${path}: ${err.message}`),
        );
        return;
      }
      fixPollerEventMask(port);
      fixHangupRead(port);
      resolve(port);
    });
  });
}

function closePort(port: SerialPort): Promise<void> {
  port.removeAllListeners('data');
  port.on('error', () => undefined);
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => {
    // Bounded: closing a PTY whose other end has gone can stall in the binding.
    const t = setTimeout(resolve, 1000);
    port.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** One direction: read, corrupt, queue, write at the line rate. */
class Lane {
  readonly counts: RelayCounts = {
    bytesIn: 0,
    bytesOut: 0,
    bitFlips: 0,
    drops: 0,
    duplicates: 0,
    garbageRuns: 0,
    garbageBytes: 0,
    queuedBytes: 0,
  };
  rates: Required<FaultRates>;
  private readonly random: () => number;
  private readonly queue: Buffer[] = [];
  private readonly copies: Buffer[] = [];
  /** performance.now() when the line finishes sending what was already written. */
  private lineFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private paused = false;
  private stopped = false;

  constructor(
    private readonly from: SerialPort,
    private readonly to: SerialPort,
    rates: FaultRates,
    seed: number,
    private readonly bytesPerMs: number | undefined,
    private readonly maxQueuedBytes: number,
    private readonly capture: boolean,
  ) {
    this.rates = checkRates(rates);
    this.random = prng(seed);
    from.on('data', (chunk: Buffer) => this.onData(chunk));
    from.on('error', () => undefined);
    to.on('error', () => undefined);
  }

  captured(): Buffer {
    return Buffer.concat(this.copies);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.counts.bytesIn += chunk.length;
    const out = this.corrupt(chunk);
    if (out.length === 0) return;
    if (this.bytesPerMs === undefined) {
      this.emit(out);
      return;
    }
    // The line is a server at a fixed rate that cannot save up idle time.
    if (this.counts.queuedBytes === 0) this.lineFreeAt = Math.max(this.lineFreeAt, performance.now());
    this.queue.push(out);
    this.counts.queuedBytes += out.length;
    if (this.counts.queuedBytes > this.maxQueuedBytes && !this.paused) {
      this.paused = true;
      this.from.pause();
    }
    this.pump();
  }

  private corrupt(chunk: Buffer): Buffer {
    const r = this.rates;
    if (r.bitFlip === 0 && r.drop === 0 && r.duplicate === 0 && r.garbage === 0) return chunk;
    const out: number[] = [];
    const c = this.counts;
    for (const byte of chunk) {
      if (r.garbage > 0 && this.random() < r.garbage) {
        const n = 1 + Math.floor(this.random() * r.garbageMaxBytes);
        for (let i = 0; i < n; i++) out.push(Math.floor(this.random() * 256));
        c.garbageRuns++;
        c.garbageBytes += n;
      }
      if (r.drop > 0 && this.random() < r.drop) {
        c.drops++;
        continue;
      }
      let b = byte;
      if (r.bitFlip > 0 && this.random() < r.bitFlip) {
        b ^= 1 << Math.floor(this.random() * 8);
        c.bitFlips++;
      }
      out.push(b);
      if (r.duplicate > 0 && this.random() < r.duplicate) {
        out.push(b);
        c.duplicates++;
      }
    }
    return Buffer.from(out);
  }

  /** Writes every queued byte whose time on the line has come, and waits for the next ones. */
  private pump(): void {
    if (this.stopped || this.timer) return;
    const rate = this.bytesPerMs!;
    const now = performance.now();
    let due = Math.min(this.counts.queuedBytes, Math.floor((now - this.lineFreeAt) * rate));
    if (due > 0) {
      this.lineFreeAt += due / rate;
      const parts: Buffer[] = [];
      while (due > 0) {
        const head = this.queue[0]!;
        if (head.length <= due) {
          parts.push(head);
          this.queue.shift();
          due -= head.length;
        } else {
          parts.push(head.subarray(0, due));
          this.queue[0] = head.subarray(due);
          due = 0;
        }
      }
      const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      this.counts.queuedBytes -= out.length;
      this.emit(out);
    }
    if (this.paused && this.counts.queuedBytes <= this.maxQueuedBytes / 2) {
      this.paused = false;
      this.from.resume();
    }
    if (this.counts.queuedBytes > 0) {
      // Small steps keep delivery smooth; the clock, not the timer, decides how much goes out.
      const wait = Math.max(1, Math.min(4, (this.lineFreeAt + 1 / rate - now) | 0));
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
    }
  }

  private emit(out: Buffer): void {
    this.counts.bytesOut += out.length;
    if (this.capture) this.copies.push(Buffer.from(out));
    this.to.write(out);
  }
}

/** Starts two socat pairs and the relay between them. */
export async function startFaultRelay(options: FaultRelayOptions = {}): Promise<FaultRelay> {
  const baudRate = options.baudRate;
  if (baudRate !== undefined && (!Number.isFinite(baudRate) || baudRate <= 0)) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `fault relay: bad baud rate ${baudRate}`);
  }
  const maxQueuedBytes = options.maxQueuedBytes ?? 4096;
  const seed = options.seed ?? 1;
  const pairs: SocatPair[] = [];
  const ports: SerialPort[] = [];
  const lanes: Lane[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const l of lanes) l.stop();
    await Promise.all(ports.map(closePort));
    await Promise.all(pairs.map((p) => p.stop()));
  };
  try {
    pairs.push(await startSocatPair(), await startSocatPair());
    const [pa, pb] = pairs as [SocatPair, SocatPair];
    const inA = await openPort(pa.b);
    ports.push(inA);
    const inB = await openPort(pb.a);
    ports.push(inB);
    const bytesPerMs = baudRate === undefined ? undefined : baudRate / 10 / 1000;
    const capture = options.capture ?? false;
    lanes.push(
      new Lane(inA, inB, options.aToB ?? {}, seed * 2 + 1, bytesPerMs, maxQueuedBytes, capture),
      new Lane(inB, inA, options.bToA ?? {}, seed * 2 + 2, bytesPerMs, maxQueuedBytes, capture),
    );
    const [aToB, bToA] = lanes as [Lane, Lane];
    return {
      a: pa.a,
      b: pb.b,
      pids: [pa.pid, pb.pid],
      baudRate,
      stats: () => ({ aToB: { ...aToB.counts }, bToA: { ...bToA.counts } }),
      setFaults: (direction, rates) => {
        (direction === 'aToB' ? aToB : bToA).rates = checkRates(rates);
      },
      captured: (direction) => (direction === 'aToB' ? aToB : bToA).captured(),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
