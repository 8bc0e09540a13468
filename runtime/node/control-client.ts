import { createConnection } from 'node:net';
import { type ErrorCode, ErrorCodes, KeyhopError } from '../errors.js';
import type { ControlResponse } from './control-protocol.js';

/** One request over a node's control socket. */
export function controlCall(
  socketPath: string,
  method: string,
  params: Record<string, unknown> = {},
  timeoutMs = 15_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new KeyhopError(ErrorCodes.TIMEOUT, `node did not answer ${method} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const notRunning = e.code === 'ENOENT' || e.code === 'ECONNREFUSED';
      reject(
        new KeyhopError(
          notRunning ? ErrorCodes.NODE_NOT_RUNNING : ErrorCodes.CONTROL_FAILED,
          notRunning ? 'node is not running' : `control socket: ${e.message}`,
        ),
      );
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      let res: ControlResponse;
      try {
        res = JSON.parse(buffer.slice(0, nl)) as ControlResponse;
      } catch {
        reject(new KeyhopError(ErrorCodes.CONTROL_FAILED, 'node sent an unreadable answer'));
        return;
      }
      if (res.ok) resolve(res.result);
      else reject(new KeyhopError(res.error.code as ErrorCode, res.error.message));
    });
  });
}
