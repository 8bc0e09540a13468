import { lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import type { EmulatedI2cBus } from './i2c-bus.js';

/** Frame layout of docs/protocols/i2c-emulator.md. */
const OP_HELLO = 0x48;
const OP_WRITE = 0x57;
const OP_READ = 0x52;
const HEADER = 4;
const MAX_TRANSFER = 4096;
const REPLY_ACK = 0;
const REPLY_NACK = 1;
const REPLY_PROTOCOL_ERROR = 2;
/** Queued reply bytes beyond which a connection stops reading (back-pressure). */
const HIGH_WATER = 256 * 1024;

/**
 * The emulator end of the LD_PRELOAD shim's Unix socket (docs/protocols/i2c-emulator.md). One
 * connection per opened /dev/i2c-N descriptor: a HELLO naming the bus first, then WRITE and READ
 * requests answered in order. A bus number the server does not know behaves as an empty bus (every
 * address NACKs). A bad op, a length outside the limits, a HELLO that is not first or not exactly
 * one byte, or an address above 0x7F is a protocol error: status 2, then the connection is closed.
 * Lengths are checked from the 4-byte header before any payload is buffered.
 */
export class I2cSocketServer {
  readonly path: string;
  readonly stats = { transactions: 0 };
  private readonly server: Server;
  private readonly buses: Map<number, EmulatedI2cBus>;
  private readonly sockets = new Set<Socket>();
  private closed = false;

  private constructor(path: string, server: Server, buses: Map<number, EmulatedI2cBus>) {
    this.path = path;
    this.server = server;
    this.buses = buses;
    server.on('connection', (socket) => this.accept(socket));
  }

  static async listen(path: string, buses: Map<number, EmulatedI2cBus>): Promise<I2cSocketServer> {
    await removeStaleSocket(path);
    const server = createServer();
    const instance = new I2cSocketServer(path, server, buses);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        reject(
          new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot listen on ${path}: ${e.message}`, { cause: e }),
        );
      };
      server.once('error', onError);
      server.listen(path, () => {
        server.off('error', onError);
        resolve();
      });
    });
    return instance;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await unlink(this.path).catch(() => {});
    // The shim's per-bus flock files beside the socket (docs/protocols/i2c-emulator.md).
    for (const bus of this.buses.keys()) await unlink(`${this.path}.bus${bus}.lock`).catch(() => {});
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const session = new Session(this, socket);
    socket.on('data', (chunk: Buffer) => session.receive(chunk));
  }

  /** @internal */
  bus(number: number): EmulatedI2cBus | undefined {
    return this.buses.get(number);
  }
}

/** One connection: reassembles frames from the stream and answers each in order. */
class Session {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private bus: EmulatedI2cBus | undefined;
  private helloDone = false;
  private dead = false;

  constructor(
    private readonly server: I2cSocketServer,
    private readonly socket: Socket,
  ) {}

  receive(chunk: Buffer): void {
    if (this.dead) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.pump();
  }

  /**
   * Answers every complete frame buffered so far. A client that sends READs without reading the
   * replies cannot make the server buffer without bound: past HIGH_WATER queued bytes the socket is
   * paused until it drains.
   */
  private pump(): void {
    this.socket.cork();
    while (!this.dead && this.pendingBytes >= HEADER) {
      if (this.socket.writableLength > HIGH_WATER) {
        this.socket.pause();
        this.socket.once('drain', () => {
          this.socket.resume();
          this.pump();
        });
        break;
      }
      const header = this.peek(HEADER);
      const op = header[0]!;
      const address = header[1]!;
      const length = header.readUInt16LE(2);
      const payloadLength = this.validate(op, address, length);
      if (payloadLength === undefined) {
        this.socket.write(reply(REPLY_PROTOCOL_ERROR));
        this.dead = true;
        break;
      }
      if (this.pendingBytes < HEADER + payloadLength) break;
      const frame = this.take(HEADER + payloadLength);
      this.socket.write(this.handle(op, address, length, frame.subarray(HEADER)));
    }
    this.socket.uncork();
    if (this.dead) {
      this.pending = [];
      this.pendingBytes = 0;
      this.socket.end();
    }
  }

  /** Payload bytes that follow the header, or undefined for a protocol error. */
  private validate(op: number, address: number, length: number): number | undefined {
    if (op === OP_HELLO) return !this.helloDone && length === 1 && address === 0 ? 1 : undefined;
    if (!this.helloDone || address > 0x7f || length < 1 || length > MAX_TRANSFER) return undefined;
    if (op === OP_WRITE) return length;
    if (op === OP_READ) return 0;
    return undefined;
  }

  private handle(op: number, address: number, length: number, payload: Buffer): Buffer {
    if (op === OP_HELLO) {
      this.helloDone = true;
      this.bus = this.server.bus(payload[0]!);
      return reply(REPLY_ACK);
    }
    this.server.stats.transactions += 1;
    if (op === OP_WRITE) {
      const result = this.bus?.write(address, new Uint8Array(payload)) ?? 'nack';
      return reply(result === 'ack' ? REPLY_ACK : REPLY_NACK);
    }
    const data = this.bus?.read(address, length) ?? 'nack';
    return data === 'nack' ? reply(REPLY_NACK) : reply(REPLY_ACK, data);
  }

  private peek(n: number): Buffer {
    if (this.pending[0] !== undefined && this.pending[0].length >= n) return this.pending[0].subarray(0, n);
    const joined = Buffer.concat(this.pending);
    this.pending = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Buffer {
    const head = this.peek(n);
    const first = this.pending[0]!;
    const copy = Buffer.from(head);
    this.pending[0] = first.subarray(n);
    if (this.pending[0].length === 0) this.pending.shift();
    this.pendingBytes -= n;
    return copy;
  }
}

function reply(status: number, data?: Uint8Array): Buffer {
  const out = Buffer.alloc(3 + (data?.length ?? 0));
  out[0] = status;
  out.writeUInt16LE(data?.length ?? 0, 1);
  if (data !== undefined) out.set(data, 3);
  return out;
}

/** A socket file left by a dead emulator is removed; a live one or any other file is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  let info: Awaited<ReturnType<typeof lstat>>;
  try {
    info = await lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket()) {
    throw new KeyhopError(ErrorCodes.LISTEN_FAILED, `${path} exists and is not a socket`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new KeyhopError(ErrorCodes.ADDRESS_IN_USE, `an emulator is already listening on ${path}`);
  await unlink(path).catch((e: unknown) => {
    throw new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot remove stale socket ${path}`, { cause: e });
  });
}
