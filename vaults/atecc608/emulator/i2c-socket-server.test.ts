import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../../runtime/errors.js';
import { Atecc608Chip } from './chip.js';
import { EmulatedI2cBus } from './i2c-bus.js';
import { I2cSocketServer } from './i2c-socket-server.js';
import { hex, toHex } from './test-helpers.js';

interface Reply {
  status: number;
  data: Uint8Array;
}

/** A minimal shim-side client: sends frames, parses replies in order, notices the close. */
class Client {
  private buffer = Buffer.alloc(0);
  private waiters: ((r: Reply) => void)[] = [];
  private replies: Reply[] = [];
  closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 3) {
        const length = this.buffer.readUInt16LE(1);
        if (this.buffer.length < 3 + length) break;
        const reply = { status: this.buffer[0]!, data: new Uint8Array(this.buffer.subarray(3, 3 + length)) };
        this.buffer = this.buffer.subarray(3 + length);
        const waiter = this.waiters.shift();
        if (waiter) waiter(reply);
        else this.replies.push(reply);
      }
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static async open(path: string, bus?: number): Promise<Client> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new Client(socket);
    if (bus !== undefined) expect((await client.hello(bus)).status).toBe(0);
    return client;
  }

  next(): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(op: number, address: number, length: number, payload: Uint8Array = new Uint8Array(0)): Promise<Reply> {
    const frame = Buffer.alloc(4 + payload.length);
    frame[0] = op;
    frame[1] = address;
    frame.writeUInt16LE(length, 2);
    frame.set(payload, 4);
    this.socket.write(frame);
    return this.next();
  }

  hello(bus: number): Promise<Reply> {
    return this.send(0x48, 0, 1, Uint8Array.of(bus));
  }

  write(address: number, bytes: Uint8Array): Promise<Reply> {
    return this.send(0x57, address, bytes.length, bytes);
  }

  read(address: number, length: number): Promise<Reply> {
    return this.send(0x52, address, length);
  }
}

let dir: string;
let server: I2cSocketServer | undefined;
let clients: Client[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyhop-i2c-'));
});

afterEach(async () => {
  for (const c of clients) c.socket.destroy();
  clients = [];
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(revision: '608A' | '608B' = '608A'): Promise<{ path: string; server: I2cSocketServer }> {
  const bus = new EmulatedI2cBus();
  bus.attach(new Atecc608Chip({ seed: 'sock', revision }));
  const path = join(dir, 'emu.sock');
  server = await I2cSocketServer.listen(path, new Map([[1, bus]]));
  return { path, server };
}

async function open(path: string, bus?: number): Promise<Client> {
  const c = await Client.open(path, bus);
  clients.push(c);
  return c;
}

describe('I2cSocketServer', () => {
  it('serves the atcab_info trace over the socket', async () => {
    const { path, server } = await start('608B');
    const c = await open(path, 1);
    expect((await c.write(0x00, Uint8Array.of(0x01))).status).toBe(1);
    const wake = await c.read(0x60, 4);
    expect(wake.status).toBe(0);
    expect(toHex(wake.data)).toBe('04 11 33 43');
    expect((await c.write(0x60, hex('03 07 30 00 00 00 03 5D'))).status).toBe(0);
    expect((await c.write(0x60, hex('00'))).status).toBe(0);
    expect(toHex((await c.read(0x60, 1)).data)).toBe('07');
    expect(toHex((await c.read(0x60, 6)).data)).toBe('00 00 60 03 83 BB');
    expect((await c.write(0x60, hex('02'))).status).toBe(0);
    const asleep = await c.read(0x60, 4);
    expect(asleep).toEqual({ status: 1, data: new Uint8Array(0) });
    expect(server.stats.transactions).toBe(8);
  });

  it('NACKs every address on an unknown bus', async () => {
    const { path } = await start();
    const c = await open(path, 7);
    expect((await c.write(0x00, Uint8Array.of(0x00))).status).toBe(1);
    expect((await c.read(0x60, 4)).status).toBe(1);
  });

  it.each([
    ['a bad op', [0x99, 0x60, 1, 0]],
    ['a zero-length write', [0x57, 0x60, 0, 0]],
    ['a write over 4096 bytes', [0x57, 0x60, 0x01, 0x10]],
    ['a read over 4096 bytes', [0x52, 0x60, 0xff, 0xff]],
    ['a 10-bit address', [0x52, 0x80, 1, 0]],
  ])('answers %s with status 2 and closes, without waiting for a payload', async (_name, header) => {
    const { path } = await start();
    const c = await open(path, 1);
    c.socket.write(Uint8Array.from(header));
    expect(await c.next()).toEqual({ status: 2, data: new Uint8Array(0) });
    await c.closed;
  });

  it('requires HELLO first and only once', async () => {
    const { path } = await start();
    const first = await open(path);
    expect((await first.read(0x60, 1)).status).toBe(2);
    await first.closed;
    const twice = await open(path, 1);
    expect((await twice.hello(1)).status).toBe(2);
    await twice.closed;
    const long = await open(path);
    expect((await long.send(0x48, 0, 2, Uint8Array.of(1, 0))).status).toBe(2);
  });

  it('reassembles frames split into single bytes and answers pipelined frames in order', async () => {
    const { path } = await start();
    const c = await open(path, 1);
    const frames = Buffer.from([0x57, 0x00, 1, 0, 0x00, 0x52, 0x60, 4, 0, 0x52, 0x60, 2, 0]);
    for (const byte of frames) {
      c.socket.write(Uint8Array.of(byte));
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.next()).status).toBe(1);
    expect(toHex((await c.next()).data)).toBe('04 11 33 43');
    expect(toHex((await c.next()).data)).toBe('FF FF');
  });

  it('serves many connections at once', async () => {
    const { path } = await start();
    const all = await Promise.all(Array.from({ length: 20 }, () => open(path, 1)));
    await all[0]!.write(0x00, Uint8Array.of(0x00));
    const answers = await Promise.all(
      all.map(async (c) => {
        await c.write(0x60, hex('00'));
        return (await c.read(0x60, 4)).status;
      }),
    );
    expect(answers.every((s) => s === 0)).toBe(true);
  });

  it('replaces a stale socket file, refuses a live one or a regular file, and unlinks on close', async () => {
    const path = join(dir, 'stale.sock');
    // A crashed emulator: a child process listens, then is killed so the socket file stays behind.
    const child = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.stdout.write('up'))`,
    ]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(existsSync(path)).toBe(true);
    const first = await I2cSocketServer.listen(path, new Map());
    await expect(I2cSocketServer.listen(path, new Map())).rejects.toSatisfy((e) =>
      isKeyhopError(e, 'ADDRESS_IN_USE'),
    );
    await first.close();
    expect(existsSync(path)).toBe(false);

    const regular = join(dir, 'file');
    await writeFile(regular, 'not a socket');
    await expect(I2cSocketServer.listen(regular, new Map())).rejects.toSatisfy((e) =>
      isKeyhopError(e, 'LISTEN_FAILED'),
    );
  });
});
