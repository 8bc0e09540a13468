/**
 * A look inside the victim of the attack benchmark (bench/attack.ts) after an attack, through the
 * V8 inspector: its heap figures (process.memoryUsage()) and its RSS after a forced full garbage
 * collection, to tell memory the victim still holds from garbage V8 has not given back yet.
 *
 * The victim is started with NODE_OPTIONS=--inspect-port=127.0.0.1:<port>, which only sets the
 * port; SIGUSR1 opens the inspector (Node's documented way to debug a running process). A small
 * WebSocket client (RFC 6455, text frames only) speaks the Chrome DevTools Protocol to it.
 */

import { randomBytes } from 'node:crypto';
import { get, request } from 'node:http';
import type { Socket } from 'node:net';

function getJson(url: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${url}: no answer`)));
    req.on('error', reject);
  });
}

/** One masked text frame (client to server). */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x81;
  if (n < 126) head[1] = 0x80 | n;
  else if (n < 65536) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  for (let i = 0; i < n; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, payload]);
}

/** A Chrome DevTools Protocol session with one process. */
export class Inspector {
  private buffer: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('inspector connection closed'));
      this.pending.clear();
    });
    socket.on('error', () => undefined);
  }

  /** SIGUSR1 to `pid`, then connects to its inspector on `port` (set by --inspect-port). */
  static async open(pid: number, port: number, timeoutMs = 10_000): Promise<Inspector> {
    process.kill(pid, 'SIGUSR1');
    const until = Date.now() + timeoutMs;
    let list: { webSocketDebuggerUrl?: string }[] | undefined;
    for (;;) {
      try {
        list = (await getJson(`http://127.0.0.1:${port}/json/list`, 2000)) as typeof list;
        if (list?.[0]?.webSocketDebuggerUrl) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > until) throw new Error(`the victim's inspector did not open on port ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const url = new URL(list[0]!.webSocketDebuggerUrl!);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = request({
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
          'Sec-WebSocket-Version': '13',
        },
      });
      req.on('upgrade', (_res, s: Socket, head: Buffer) => {
        if (head.length > 0) s.unshift(head);
        resolve(s);
      });
      req.on('response', (res) => reject(new Error(`inspector refused the WebSocket (${res.statusCode})`)));
      req.on('error', reject);
      req.end();
    });
    return new Inspector(socket);
  }

  call(method: string, params: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`inspector: no answer to ${method}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(textFrame(JSON.stringify({ id, method, params })));
    });
  }

  /** `process.memoryUsage()` of the inspected process. */
  async memoryUsage(): Promise<Record<string, number>> {
    const r = (await this.call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result?: { value?: string } };
    return JSON.parse(r.result?.value ?? '{}') as Record<string, number>;
  }

  /** A full garbage collection in the inspected process. */
  async collectGarbage(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
  }

  close(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const opcode = b[0]! & 0x0f;
      const payload = b.subarray(off, off + len);
      this.buffer = b.subarray(off + len);
      if (opcode !== 1) continue; // only text frames carry protocol messages
      try {
        const m = JSON.parse(payload.toString('utf8')) as {
          id?: number;
          result?: unknown;
          error?: { message?: string };
        };
        if (m.id === undefined) continue; // an event
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(new Error(m.error.message ?? 'inspector error'));
        else p?.resolve(m.result);
      } catch {
        // not JSON: ignored
      }
    }
  }
}
