/**
 * Every failure a user (or a remote peer) can cause surfaces as a KeyhopError with a stable,
 * machine-readable `code`. Codes are part of the public API: scripts match on them, so never
 * rename one; add a new one instead.
 */
export const ErrorCodes = {
  ADDRESS_INVALID: 'ADDRESS_INVALID',
  ROUTE_INVALID: 'ROUTE_INVALID',
  ROUTE_EMPTY: 'ROUTE_EMPTY',
  ADDRESS_UNKNOWN: 'ADDRESS_UNKNOWN',
  ADDRESS_IN_USE: 'ADDRESS_IN_USE',
  TRANSPORT_UNKNOWN: 'TRANSPORT_UNKNOWN',
  DECODE_TRUNCATED: 'DECODE_TRUNCATED',
  DECODE_INVALID: 'DECODE_INVALID',
  DECODE_LIMIT: 'DECODE_LIMIT',
  DECODE_VERSION: 'DECODE_VERSION',
  ENCODE_LIMIT: 'ENCODE_LIMIT',
  CONNECT_FAILED: 'CONNECT_FAILED',
  CONNECTION_CLOSED: 'CONNECTION_CLOSED',
  SEND_FAILED: 'SEND_FAILED',
  PROTOCOL_VERSION: 'PROTOCOL_VERSION',
  LISTEN_FAILED: 'LISTEN_FAILED',
  TIMEOUT: 'TIMEOUT',
  ROUTER_STOPPED: 'ROUTER_STOPPED',
  WORKER_STOPPED: 'WORKER_STOPPED',
  RELAY_REJECTED: 'RELAY_REJECTED',
  RELAY_NAME_INVALID: 'RELAY_NAME_INVALID',
  CONFIG_INVALID: 'CONFIG_INVALID',
  NODE_EXISTS: 'NODE_EXISTS',
  NODE_NOT_FOUND: 'NODE_NOT_FOUND',
  NODE_NOT_RUNNING: 'NODE_NOT_RUNNING',
  IDENTITY_EXISTS: 'IDENTITY_EXISTS',
  IDENTITY_NOT_FOUND: 'IDENTITY_NOT_FOUND',
  CONTROL_FAILED: 'CONTROL_FAILED',
  USAGE: 'USAGE',
  /** Something keyhop did not expect: a bug, reported as such. */
  INTERNAL: 'INTERNAL',
  // Crypto and vaults
  AEAD_FAILED: 'AEAD_FAILED',
  KEY_INVALID: 'KEY_INVALID',
  KEY_NOT_FOUND: 'KEY_NOT_FOUND',
  KEY_STORE_CORRUPT: 'KEY_STORE_CORRUPT',
  KEY_STORE_LOCKED: 'KEY_STORE_LOCKED',
  KEY_STORE_IO: 'KEY_STORE_IO',
  /** No vault (key store or hardware vault descriptor) of that name: create it explicitly. */
  VAULT_NOT_FOUND: 'VAULT_NOT_FOUND',
  VAULT_EXISTS: 'VAULT_EXISTS',
  SIGNATURE_INVALID: 'SIGNATURE_INVALID',
  UNSUPPORTED: 'UNSUPPORTED',
  // Identities, credentials, policies
  IDENTITY_INVALID: 'IDENTITY_INVALID',
  CREDENTIAL_INVALID: 'CREDENTIAL_INVALID',
  CREDENTIAL_EXPIRED: 'CREDENTIAL_EXPIRED',
  POLICY_INVALID: 'POLICY_INVALID',
  TRUST_REFUSED: 'TRUST_REFUSED',
  // Enrollment authorities
  AUTHORITY_NOT_FOUND: 'AUTHORITY_NOT_FOUND',
  AUTHORITY_EXISTS: 'AUTHORITY_EXISTS',
  /** State another running process holds (an authority served by a node): ask that process. */
  STATE_IN_USE: 'STATE_IN_USE',
  // Secure channels and portals
  HANDSHAKE_FAILED: 'HANDSHAKE_FAILED',
  HANDSHAKE_TIMEOUT: 'HANDSHAKE_TIMEOUT',
  CHANNEL_CLOSED: 'CHANNEL_CLOSED',
  NONCE_EXHAUSTED: 'NONCE_EXHAUSTED',
  NONCE_REJECTED: 'NONCE_REJECTED',
  PORTAL_FAILED: 'PORTAL_FAILED',
  // Brokers and store-and-forward
  /** A store-and-forward outbox is at its configured size: the message was not taken. */
  OUTBOX_FULL: 'OUTBOX_FULL',
  // pairing
  PAIRING_FAILED: 'PAIRING_FAILED',
  // Hardware vaults (secure elements, TPMs, tokens)
  /** The device, its bus or its driver cannot be reached (no /dev/i2c-N, no kit, addon not built). */
  HARDWARE_UNAVAILABLE: 'HARDWARE_UNAVAILABLE',
  /** The bus failed or the device did not answer within its budget after the allowed retries. */
  HARDWARE_IO: 'HARDWARE_IO',
  /** The device refused the command: its state or key policy forbids it, or it could not parse it. */
  HARDWARE_REFUSED: 'HARDWARE_REFUSED',
  /** The device reports an internal fault (self-test or RNG health-test failure, computation fault). */
  HARDWARE_FAULT: 'HARDWARE_FAULT',
  /** An irreversible provisioning step was refused: already done in an incompatible way, or not confirmed. */
  PROVISION_REFUSED: 'PROVISION_REFUSED',
  /** A portal peer broke keyhop's flow control (data beyond its credit, a message out of turn): the stream is closed. */
  PORTAL_FLOW_VIOLATION: 'PORTAL_FLOW_VIOLATION',
  /** A secure-channel listener refused a verified, trusted peer: it has its maximum of channels open (in all, or with that identity). */
  CHANNEL_LIMIT: 'CHANNEL_LIMIT',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class KeyhopError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeyhopError';
    this.code = code;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** `e instanceof KeyhopError` (optionally with this code) that never throws, even for a hostile proxy. */
export function isKeyhopError(e: unknown, code?: ErrorCode): e is KeyhopError {
  try {
    return e instanceof KeyhopError && (code === undefined || e.code === code);
  } catch {
    return false;
  }
}

/**
 * One line describing anything that was thrown: an Error's message, or the value as text. Never
 * throws itself: a thrown value can be anything, including objects whose `toString` is not a
 * function (`{ toString: [] }`), objects without a prototype, proxies whose traps throw, or errors
 * whose `message` getter throws.
 */
export function describeError(e: unknown): string {
  try {
    if (e instanceof Error) {
      const { message } = e;
      if (typeof message === 'string' && message !== '') return message;
      const { name } = e;
      if (typeof name === 'string' && name !== '') return name;
    }
  } catch {
    // fall through to the generic descriptions
  }
  try {
    if (typeof e === 'symbol') return e.toString();
    const text = String(e);
    if (typeof text === 'string') return text;
  } catch {
    // String() called a toString/valueOf/Symbol.toPrimitive that threw or was not callable
  }
  try {
    return Object.prototype.toString.call(e);
  } catch {
    return 'an indescribable thrown value';
  }
}

/**
 * A property of a thrown value (`code`, `errno`, …), or undefined. Never throws: the value may be
 * null, a primitive, or a proxy whose traps throw.
 */
export function thrownProperty(e: unknown, name: string): unknown {
  try {
    if ((typeof e !== 'object' && typeof e !== 'function') || e === null) return undefined;
    return (e as Record<string, unknown>)[name];
  } catch {
    return undefined;
  }
}

/** Wrap anything thrown by third-party code so callers only ever see KeyhopError. */
export function asKeyhopError(e: unknown, code: ErrorCode, context: string): KeyhopError {
  if (isKeyhopError(e)) return e;
  return new KeyhopError(code, `${context}: ${describeError(e)}`, { cause: e });
}
