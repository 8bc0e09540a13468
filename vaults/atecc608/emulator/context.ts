import type { ChipMemory, Revision } from './memory.js';
import type { ChipRng } from './rng.js';
import type { VolatileState } from './volatile.js';

/** A parsed command as the chip sees it (§1.4). */
export interface ChipCommand {
  readonly opcode: number;
  readonly param1: number;
  readonly param2: number;
  readonly data: Uint8Array;
}

/** A handler answers either response data (count 3 + n) or a single status byte (count 4). */
export type CommandResult = { readonly data: Uint8Array } | { readonly status: number };

/** Behaviours the public sources leave open (atecc608.md §9); defaults are documented in chip.ts. */
export interface ChipQuirks {
  /**
   * §9.4: whether Sign keeps the message buffer it signed valid. Default false: Sign invalidates
   * TempKey (as cryptoauthlib's `atca_host.c` TempKey model assumes) and the MsgDigBuf it signed from.
   */
  readonly keepMessageAfterSign: boolean;
}

/** Everything a command handler may touch. */
export interface ChipContext {
  readonly revision: Revision;
  readonly mem: ChipMemory;
  readonly vol: VolatileState;
  readonly rng: ChipRng;
  readonly quirks: ChipQuirks;
  /** True when an injected ECC fault should hit this ECC operation (consumes one). */
  eccFault(): boolean;
  /** Self-test failure injection: the bitmap of tests that fail (0 = all pass). */
  selfTestFailMask(): number;
  setSelfTestFailed(failed: boolean): void;
}

export function ok(data: Uint8Array): CommandResult {
  return { data };
}

export function status(code: number): CommandResult {
  return { status: code };
}
