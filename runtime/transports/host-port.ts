import { ErrorCodes, KeyhopError } from '../errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port`. Port 0 is allowed only where `allowZero` (binding to any free port). */
export function parseHostPort(text: string, allowZero = false): HostPort {
  const m = /^\[([^[\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `"${text}" is not host:port`);
  }
  const port = Number(m[2]);
  if (port > 65535 || (port === 0 && !allowZero)) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `"${text}": port ${port} is out of range`);
  }
  return { host: m[1]!, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
