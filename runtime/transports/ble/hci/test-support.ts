/**
 * Test stand-ins for the socket package's native driver (lib/native.js), which needs a kernel
 * with AF_BLUETOOTH: not in CI. Both behave like the addon as kernel-socket.ts relies on it:
 * bindUser() throws strerror(errno) or returns the adapter number, every received HCI packet is
 * one 'data' event (H4 type byte first) once start() ran, write() failures are 'error' events
 * with errno and syscall.
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import type { NativeHciSocket } from './stack-types.js';

/** Records what kernel-socket.ts does to the addon; the test plays the kernel. */
export class ScriptedUserChannel extends EventEmitter implements NativeHciSocket {
  static readonly instances: ScriptedUserChannel[] = [];
  /** What the next bindUser() does: throw this strerror text, or (errno) fail like socket(). */
  static nextBind: { throws: string } | { errno: number; message: string } | undefined;
  readonly writes: Buffer[] = [];
  readonly calls: string[] = [];
  devId: number | undefined;

  constructor() {
    super();
    ScriptedUserChannel.instances.push(this);
  }

  bindUser(devId?: number): number | undefined {
    this.calls.push(`bindUser(${devId})`);
    const next = ScriptedUserChannel.nextBind;
    ScriptedUserChannel.nextBind = undefined;
    if (next !== undefined && 'throws' in next) throw new Error(next.throws);
    if (next !== undefined) {
      // What the addon does when socket(AF_BLUETOOTH) fails: an 'error' event, no exception.
      this.emit(
        'error',
        Object.assign(new Error(next.message), { errno: next.errno, syscall: 'socket creation failed' }),
      );
      return undefined;
    }
    this.devId = devId;
    return devId;
  }

  start(): void {
    this.calls.push('start');
  }

  stop(): void {
    this.calls.push('stop');
  }

  write(data: Buffer): void {
    this.calls.push(`write ${data.toString('hex')}`);
    this.writes.push(Buffer.from(data));
  }

  /** A packet from the controller, as the reader thread would deliver it. */
  receive(hex: string): void {
    this.emit('data', Buffer.from(hex, 'hex'));
  }
}

/**
 * A "kernel adapter" that is a btvirt LE controller (test/rig/ble.ts): bindUser() connects to
 * btvirt's H4 socket, which creates a fresh controller, and packets are framed one per 'data'
 * event like the kernel's user channel delivers them. `gone()` plays the adapter being removed:
 * later writes fail as the kernel would fail them.
 */
export class BtvirtUserChannel extends EventEmitter implements NativeHciSocket {
  static serverPath = '/tmp/bt-server-le';
  /** bindUser() errors by adapter number, as strerror texts. */
  static readonly bindErrors = new Map<number, string>();
  /** Instances bound and not stopped. */
  static readonly live = new Set<BtvirtUserChannel>();
  /** Writes attempted after stop(): the real addon would write to a file descriptor it no longer owns. */
  static writesAfterStop = 0;
  devId: number | undefined;
  private sock: Socket | undefined;
  private started = false;
  private stopped = false;
  private removed = false;
  private pending = Buffer.alloc(0);
  private readonly early: Buffer[] = [];

  bindUser(devId = 0): number {
    const error = BtvirtUserChannel.bindErrors.get(devId);
    if (error !== undefined) throw new Error(error);
    this.devId = devId;
    const sock = createConnection(BtvirtUserChannel.serverPath);
    sock.on('data', (d: Buffer) => this.frame(d));
    sock.on('error', () => undefined);
    this.sock = sock;
    BtvirtUserChannel.live.add(this);
    return devId;
  }

  start(): void {
    this.started = true;
    for (const p of this.early.splice(0)) this.emit('data', p);
  }

  stop(): void {
    this.stopped = true;
    this.started = false;
    this.sock?.destroy();
    BtvirtUserChannel.live.delete(this);
  }

  write(data: Buffer): void {
    if (this.stopped) {
      BtvirtUserChannel.writesAfterStop++;
      return;
    }
    if (this.removed || this.sock === undefined) {
      this.emit('error', Object.assign(new Error('No such device'), { errno: 19, syscall: 'write' }));
      return;
    }
    this.sock.write(data);
  }

  /** The adapter is removed (USB dongle pulled): nothing arrives any more, writes fail. */
  gone(): void {
    this.removed = true;
    this.sock?.destroy();
  }

  private frame(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    for (;;) {
      const length = h4Length(this.pending);
      if (length === undefined || this.pending.length < length) return;
      const packet = this.pending.subarray(0, length);
      this.pending = this.pending.subarray(length);
      if (this.started) this.emit('data', packet);
      else this.early.push(packet);
    }
  }
}

/** Length of the H4 packet at the start of `b`, once its header is there. */
function h4Length(b: Buffer): number | undefined {
  switch (b[0]) {
    case undefined:
      return undefined;
    case 0x04: // event: code, length
      return b.length >= 3 ? 3 + b[2]! : undefined;
    case 0x02: // ACL: handle (2), length (2)
      return b.length >= 5 ? 5 + b.readUInt16LE(3) : undefined;
    case 0x03: // SCO: handle (2), length (1)
      return b.length >= 4 ? 4 + b[3]! : undefined;
    case 0x05: // ISO: handle (2), length (14 bits)
      return b.length >= 5 ? 5 + (b.readUInt16LE(3) & 0x3fff) : undefined;
    default:
      throw new Error(`btvirt sent an unknown H4 packet type 0x${b[0].toString(16)}`);
  }
}
