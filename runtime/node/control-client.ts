import { createConnection } from 'node:net';
import { basename, dirname } from 'node:path';
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
      reject(
        new KeyhopError(
          ErrorCodes.TIMEOUT,
          `node "${basename(dirname(socketPath))}" did not answer ${method} within ${timeoutMs} ms (is it overloaded? see its node.log)`,
        ),
      );
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const notRunning = e.code === 'ENOENT' || e.code === 'ECONNREFUSED';
      // A node's socket is <home>/nodes/<name>/control.sock: the name says which node to start.
      const name = basename(dirname(socketPath));
      reject(
        new KeyhopError(
          notRunning ? ErrorCodes.NODE_NOT_RUNNING : ErrorCodes.CONTROL_FAILED,
          notRunning
            ? `node "${name}" is not running (start it with: keyhop node start ${name}; keyhop node list shows the nodes here)`
            : `control socket of node "${name}": ${e.message}`,
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
