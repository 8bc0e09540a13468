/**
 * How the protocol core reaches a chip. Every link (the native I2C addon, the kit protocol over USB
 * HID or a serial port, the in-process emulator) does the same job: wake the chip, run a few
 * command packets in that one wake, read each response, then idle (keeps TempKey and the
 * message-digest buffer) or sleep (clears all volatile state). Wake and polling timing belong to
 * the link, because only it knows its bus; the protocol core gives each command's execution budget.
 */
export interface CommandStep {
  /** The command packet, count through CRC, without the I2C word address. */
  readonly packet: Uint8Array;
  /** Longest the chip may take to execute it, ms (datasheet budget for the clock divider in use). */
  readonly maxExecMs: number;
}

export type AfterTransaction = 'idle' | 'sleep';

export interface TransactOptions {
  /** What to do with the chip after the last command. Default `idle`. */
  readonly end?: AfterTransaction;
}

export interface AteccLink {
  /** `i2c`, `kit-hid`, `kit-serial` or `emulator`, for logs and `info`. */
  readonly kind: string;
  /** Human-readable location: `/dev/i2c-1@0x60`, a HID path, a serial path. */
  readonly location: string;
  /**
   * Runs the steps in order inside one wake and returns each raw response (count through CRC,
   * unchecked: the protocol core checks CRC and status and decides on retries). Rejects with a
   * KeyhopError (`HARDWARE_IO`, `HARDWARE_UNAVAILABLE`, `TIMEOUT`) when the link itself fails.
   * Calls on one link are serialised by the link. An empty `steps` list only wakes the chip and
   * applies `end`: that is how the protocol core puts it to sleep.
   */
  transact(steps: readonly CommandStep[], options?: TransactOptions): Promise<Uint8Array[]>;
  close(): Promise<void>;
}
