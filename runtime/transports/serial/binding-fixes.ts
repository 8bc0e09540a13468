import { read as fsRead } from 'node:fs';
import { promisify } from 'node:util';
import type { SerialPort } from 'serialport';

/**
 * Workarounds for two bugs of @serialport/bindings-cpp (12.0.1 and 13.0.0) on Linux and macOS,
 * applied to every port keyhop opens: the serial transport's and the BLE HCI UART's. They reach
 * into the binding's internals: re-check them when upgrading serialport.
 */

/** uv_poll event bits of @serialport/bindings-cpp's Poller (dist/poller.js EVENTS). */
const UV_READABLE = 0b001;
const UV_WRITABLE = 0b010;
const UV_DISCONNECT = 0b100;

interface UnixPoller {
  poll(eventFlag?: number): void;
  listenerCount(event: string): number;
}

/**
 * Works around a lost-wakeup bug in @serialport/bindings-cpp (13.0.0) on Linux and macOS: its
 * Poller keeps one uv_poll handle per port, but each `poll(flag)` calls
 * `uv_poll_start(handle, flag)` with only the event just asked for, which REPLACES the events
 * being watched. A pending read waits for "readable" and a pending write (after EAGAIN, i.e. the
 * tty's output buffer was full) waits for "writable"; whichever asked last wins and the other is
 * never woken. When the read re-arms after the write, the write queue stalls for good unless the
 * peer sends something: bytes were handed to port.write (and counted) but never reach the device,
 * while the peer, having nothing to answer, never sends. Every event someone is still waiting for
 * is now passed along on each call, so uv_poll_start always gets the union. (The native side
 * re-polls after an event with everything ever asked for minus what fired, which keeps the rest.)
 * Returns false when the port's binding has no such poller (Windows, mock bindings).
 */
export function fixPollerEventMask(port: SerialPort): boolean {
  const poller = (port as unknown as { port?: { poller?: UnixPoller } }).port?.poller;
  if (poller === undefined || typeof poller.poll !== 'function') return false;
  if ((poller as { keyhopPollFix?: boolean }).keyhopPollFix) return true;
  const poll = poller.poll.bind(poller);
  poller.poll = (eventFlag = 0) => {
    let flags = eventFlag;
    if (poller.listenerCount('readable') > 0) flags |= UV_READABLE;
    if (poller.listenerCount('writable') > 0) flags |= UV_WRITABLE;
    if (poller.listenerCount('disconnect') > 0) flags |= UV_DISCONNECT;
    poll(flags);
  };
  (poller as { keyhopPollFix?: boolean }).keyhopPollFix = true;
  return true;
}

interface UnixBinding {
  fd: number | null;
  isOpen: boolean;
  poller?: { once(event: 'readable', cb: (err: Error | null) => void): unknown };
  read(buffer: Buffer, offset: number, length: number): Promise<{ bytesRead: number; buffer: Buffer }>;
  keyhopHangupFix?: boolean;
}

const readAsync = promisify(fsRead);

/**
 * Makes a hang-up of the line visible to a port that is only reading. A tty that has been hung up
 * (the PTY's master closed, a USB adapter unplugged) answers every read with 0 bytes, forever.
 * @serialport/bindings-cpp 13's unixRead takes 0 bytes for "nothing yet" and reads again at
 * once, so the port spins on the thread pool and never reports the loss. It was only noticed when
 * the hang-up reached the poller as an error while the read was parked there (usually, for an idle
 * reader; hardly ever for one receiving), or when a write failed. The port is opened with VMIN=1,
 * so a read returns at least one byte or fails with EAGAIN: 0 bytes means end of file. This
 * replacement read reports it as a disconnect, which closes the port (the `close` event). Returns
 * false when the binding has no unix poller (Windows, mock bindings).
 */
export function fixHangupRead(port: SerialPort): boolean {
  const binding = (port as unknown as { port?: UnixBinding }).port;
  const poller = binding?.poller;
  if (binding === undefined || poller === undefined || typeof binding.read !== 'function') return false;
  if (binding.keyhopHangupFix) return true;
  const original = binding.read.bind(binding);
  const canceled = () => Object.assign(new Error('Port is not open'), { canceled: true });
  binding.read = async (buffer, offset, length) => {
    if (length === 0) return original(buffer, offset, length);
    for (;;) {
      const fd = binding.fd;
      if (!binding.isOpen || fd === null) throw canceled();
      let bytesRead: number;
      try {
        ({ bytesRead } = await readAsync(fd, buffer, offset, length, null));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw e;
        if (!binding.isOpen) throw canceled();
        await new Promise<void>((resolve, reject) =>
          poller.once('readable', (err) => (err ? reject(err) : resolve())),
        );
        continue;
      }
      if (bytesRead > 0) return { bytesRead, buffer };
      throw Object.assign(new Error('serial line hung up (read returned end of file)'), { disconnect: true });
    }
  };
  binding.keyhopHangupFix = true;
  return true;
}
