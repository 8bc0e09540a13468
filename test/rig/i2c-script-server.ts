import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A scripted stand-in for the emulator's side of the I2C redirect protocol
 * (docs/protocols/i2c-emulator.md): every request goes to a handler the test supplies, and every
 * frame is logged in arrival order with its connection, so a test can compare the bus traffic with
 * a trace byte for byte. `scriptedChip()` is a small ATECC-like handler with knobs for the faults
 * the addon must survive. Test rig only; the real emulator server lives in vaults/atecc608/emulator.
 */

const OP_HELLO = 0x48;
const OP_WRITE = 0x57;
const OP_READ = 0x52;
const MAX_LEN = 4096;

export type I2cOp = 'HELLO' | 'WRITE' | 'READ';

export interface I2cRequest {
  /** Connection number (one per opened descriptor), in accept order from 1. */
  readonly conn: number;
  /** Bus number from the connection's HELLO (-1 before it). */
  readonly bus: number;
  readonly op: 'WRITE' | 'READ';
  readonly addr: number;
  /** WRITE payload; empty for READ. */
  readonly data: Uint8Array;
  /** READ: bytes wanted; WRITE: payload length. */
  readonly len: number;
}

export type I2cReply = { readonly status: 'ACK'; readonly data?: Uint8Array } | { readonly status: 'NACK' };

export type I2cHandler = (req: I2cRequest) => I2cReply | Promise<I2cReply>;

export interface I2cFrame {
  readonly conn: number;
  readonly bus: number;
  readonly op: I2cOp;
  readonly addr: number;
  /** WRITE/HELLO: the payload; READ with ACK: the bytes returned. */
  readonly data: Uint8Array;
  readonly len: number;
  readonly status: 'ACK' | 'NACK' | 'ERROR';
  /** performance.now() when the request arrived. */
  readonly at: number;
}

export class I2cScriptServer {
  readonly frames: I2cFrame[] = [];
  private readonly sockets = new Set<Socket>();
  private connections = 0;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    public handler: I2cHandler,
  ) {}

  /** Listens on a fresh socket path under the temp directory. */
  static async start(handler: I2cHandler, path?: string): Promise<I2cScriptServer> {
    const socketPath =
      path ?? join(tmpdir(), `keyhop-i2c-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
    rmSync(socketPath, { force: true });
    const server = createServer();
    const s = new I2cScriptServer(socketPath, server, handler);
    server.on('connection', (sock) => s.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return s;
  }

  /** Frames without the HELLOs, as `W 0x60 [03 07 …] ACK` / `R 0x60 len 4 -> 04 11 33 43` lines. */
  trace(frames: readonly I2cFrame[] = this.frames): string[] {
    return frames.filter((f) => f.op !== 'HELLO').map(formatFrame);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
    // The shim's per-bus lock files (docs/protocols/i2c-emulator.md, flock).
    const buses = new Set(this.frames.filter((f) => f.op === 'HELLO').map((f) => f.bus));
    for (const bus of buses) rmSync(`${this.path}.bus${bus}.lock`, { force: true });
  }

  private serve(sock: Socket): void {
    const conn = ++this.connections;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let bus = -1;
    let busy = false;
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (buf.length >= 4) {
          const op = buf[0]!;
          const addr = buf[1]!;
          const len = buf.readUInt16LE(2);
          const at = performance.now();
          const bad = (): void => {
            this.frames.push({
              conn,
              bus,
              op: 'HELLO',
              addr,
              data: new Uint8Array(0),
              len,
              status: 'ERROR',
              at,
            });
            sock.end(Buffer.from([2, 0, 0]));
            buf = Buffer.alloc(0);
          };
          if (op === OP_HELLO) {
            if (len !== 1) return bad();
            if (buf.length < 5) return;
            bus = buf[4]!;
            buf = buf.subarray(5);
            this.frames.push({
              conn,
              bus,
              op: 'HELLO',
              addr,
              data: Uint8Array.of(bus),
              len,
              status: 'ACK',
              at,
            });
            sock.write(Buffer.from([0, 0, 0]));
            continue;
          }
          if ((op !== OP_WRITE && op !== OP_READ) || len < 1 || len > MAX_LEN) return bad();
          const isWrite = op === OP_WRITE;
          if (isWrite && buf.length < 4 + len) return;
          const data = isWrite ? Uint8Array.from(buf.subarray(4, 4 + len)) : new Uint8Array(0);
          buf = buf.subarray(isWrite ? 4 + len : 4);
          const req: I2cRequest = { conn, bus, op: isWrite ? 'WRITE' : 'READ', addr, data, len };
          const reply = await this.handler(req);
          if (reply.status === 'NACK') {
            this.frames.push({ conn, bus, op: req.op, addr, data, len, status: 'NACK', at });
            sock.write(Buffer.from([1, 0, 0]));
            continue;
          }
          let out = new Uint8Array(0);
          if (!isWrite) {
            out = new Uint8Array(len).fill(0xff);
            out.set((reply.data ?? new Uint8Array(0)).subarray(0, len));
          }
          this.frames.push({
            conn,
            bus,
            op: req.op,
            addr,
            data: isWrite ? data : out,
            len,
            status: 'ACK',
            at,
          });
          const hdr = Buffer.from([0, out.length & 0xff, out.length >> 8]);
          sock.write(Buffer.concat([hdr, out]));
        }
      } finally {
        busy = false;
      }
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      void pump();
    });
  }
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

export function formatFrame(f: I2cFrame): string {
  const a = `0x${f.addr.toString(16).padStart(2, '0')}`;
  if (f.op === 'WRITE') return `W ${a} [${hex(f.data)}]${f.status === 'NACK' ? ' NACK' : ''}`;
  if (f.op === 'READ')
    return f.status === 'NACK' ? `R ${a} len ${f.len} NACK` : `R ${a} len ${f.len} -> ${hex(f.data)}`;
  return `HELLO bus ${f.data[0] ?? '?'}`;
}

export const WAKE_TOKEN = Uint8Array.of(0x04, 0x11, 0x33, 0x43);

export interface ScriptedChipOptions {
  /** 7-bit address the chip answers. Default 0x60. */
  readonly address?: number;
  /** What a wake read returns. Default 04 11 33 43. */
  readonly wakeResponse?: Uint8Array;
  /** Number of general-call wakes that do not wake the chip (its wake reads are NACKed). */
  readonly wakeFailures?: number;
  /** Polls (NACKed requests) while busy after each command. Default 0. */
  readonly busyPolls?: number;
  /** Busy for at least this long after each command, ms. Default 0. */
  readonly busyMs?: number;
  /**
   * The response to a command packet (count..CRC); undefined = never finishes (busy forever).
   * Default: status 00 (04 00 03 40).
   */
  readonly respond?: (packet: Uint8Array) => Uint8Array | undefined;
  /** Start awake with this in the output buffer (a previous user never idled the chip). */
  readonly staleOutput?: Uint8Array;
}

export interface ScriptedChip {
  readonly handler: I2cHandler;
  /** Command packets received, in order. */
  readonly commands: Uint8Array[];
  /** Wakes that took effect. */
  wakes: number;
}

/**
 * A chip model just detailed enough for link tests: asleep until a general call, NACK while asleep
 * or busy, word addresses 00/01/02/03, an output pointer that persists across reads (atecc608.md
 * §1.3, §1.7, §1.8), reads past the end padded with FF.
 */
export function scriptedChip(options: ScriptedChipOptions = {}): ScriptedChip {
  const address = options.address ?? 0x60;
  const respond = options.respond ?? (() => Uint8Array.of(0x04, 0x00, 0x03, 0x40));
  let awake = options.staleOutput !== undefined;
  let output: Uint8Array = options.staleOutput ?? new Uint8Array(0);
  let pointer = 0;
  let wakeFailures = options.wakeFailures ?? 0;
  let busyPolls = 0;
  let busyUntil = 0;
  let forever = false;
  const chip: ScriptedChip = {
    commands: [],
    wakes: 0,
    handler: (req) => {
      if (req.addr === 0) {
        if (req.op === 'WRITE' && !awake) {
          if (wakeFailures > 0) wakeFailures--;
          else {
            awake = true;
            chip.wakes++;
            output = options.wakeResponse ?? WAKE_TOKEN;
            pointer = 0;
          }
        }
        return { status: 'NACK' };
      }
      if (req.addr !== address || !awake) return { status: 'NACK' };
      if (forever || busyPolls > 0 || performance.now() < busyUntil) {
        if (busyPolls > 0) busyPolls--;
        return { status: 'NACK' };
      }
      if (req.op === 'READ') {
        const out = new Uint8Array(req.len).fill(0xff);
        out.set(output.subarray(pointer, pointer + req.len));
        pointer += req.len;
        return { status: 'ACK', data: out };
      }
      const word = req.data[0];
      if (word === 0x00) pointer = 0;
      else if (word === 0x01 || word === 0x02) awake = false;
      else if (word === 0x03) {
        const packet = req.data.slice(1);
        chip.commands.push(packet);
        const r = respond(packet);
        output = r ?? new Uint8Array(0);
        pointer = 0;
        forever = r === undefined;
        busyPolls = options.busyPolls ?? 0;
        busyUntil = performance.now() + (options.busyMs ?? 0);
      }
      return { status: 'ACK' };
    },
  };
  return chip;
}
