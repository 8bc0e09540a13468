import type { Atecc608Chip } from './chip.js';
import { T_WLO_US } from './constants.js';

export type WriteResult = 'ack' | 'nack';

/** One bus transfer as the bus answered it, for the optional `trace` hook. */
export interface I2cBusEvent {
  readonly op: 'write' | 'read';
  /** 7-bit address (0 = general call). */
  readonly address: number;
  /** Write: the bytes sent. Read: the bytes returned (empty when NACKed). */
  readonly bytes: Uint8Array;
  /** Read: the number of bytes asked for. Write: the number sent. */
  readonly length: number;
  readonly result: WriteResult;
}

export interface EmulatedI2cBusOptions {
  /** Bus clock; decides whether the general-call wake is long enough (default 100 kHz). */
  readonly busHz?: number;
  readonly now?: () => number;
  /** Called after every transfer (tests compare bus traffic with atecc608.md §1.8). */
  readonly trace?: (event: I2cBusEvent) => void;
  /**
   * Test hook: after a command's execution time is over, the chip keeps NACKing while this returns
   * true (it gets how many transfers were NACKed since the command). Tests use it to make a trace
   * depend on events they control, never on how soon a loaded machine lets the host poll.
   */
  readonly holdBusy?: (nackedSinceCommand: number) => boolean;
}

interface Attached {
  readonly chip: Atecc608Chip;
  /** Read pointer into the chip's output buffer; persists across read transactions (§1.8). */
  pointer: number;
  /** The chip NACKs until then: tWHI after a wake, or the end of command execution. */
  busyUntil: number;
  /** A command was written and nothing has been ACKed since (`holdBusy` applies). */
  commandPending: boolean;
  nackedSinceCommand: number;
}

/**
 * One I2C bus with ATECC608 chips on it, transaction by transaction, the way /dev/i2c-N sees it
 * (atecc608.md §1). What it models:
 * - A write to address 0 (general call) is the wake pulse: address 0x00 + W holds SDA low for 8 bit
 *   times, which must reach tWLO = 60 µs, so it wakes sleeping and idle chips only at bus clocks up
 *   to ~133 kHz (§1.2, §7.3). Nobody ACKs a general call: the answer is always NACK. Other traffic
 *   never wakes a chip here (a real bus can, below ~300 kHz; not modelled).
 * - A chip that is asleep, idle, inside tWHI after a wake (unless its timing is 'zero') or busy
 *   executing NACKs its address, reads and writes alike (§1.7).
 * - The first byte of a write is the word address (§1.3): 0x00 rewinds the output pointer, 0x01
 *   sleep, 0x02 idle, 0x03 command. Reserved values 0x04-0xFF are NACKed after the address
 *   (documented choice: the write fails and nothing changes).
 * - Reads continue from a pointer that persists across transactions and is rewound by a wake, a
 *   command or word address 0x00; bytes past the end of the response read as 0xFF without a NACK
 *   (§9.2 assumption).
 * - The watchdog is checked on every transaction addressed to a chip.
 */
export class EmulatedI2cBus {
  readonly busHz: number;
  private readonly now: () => number;
  private readonly chips: Attached[] = [];
  private readonly trace: ((event: I2cBusEvent) => void) | undefined;
  private readonly holdBusy: ((nackedSinceCommand: number) => boolean) | undefined;

  constructor(options: EmulatedI2cBusOptions = {}) {
    this.busHz = options.busHz ?? 100_000;
    this.now = options.now ?? (() => performance.now());
    this.trace = options.trace;
    this.holdBusy = options.holdBusy;
  }

  attach(chip: Atecc608Chip): void {
    if (this.chips.some((a) => a.chip === chip)) return;
    this.chips.push({ chip, pointer: 0, busyUntil: 0, commandPending: false, nackedSinceCommand: 0 });
  }

  /** True when a general-call write at this bus clock holds SDA low long enough to wake a chip. */
  get generalCallWakes(): boolean {
    return (8 * 1e6) / this.busHz >= T_WLO_US;
  }

  write(address7: number, bytes: Uint8Array): WriteResult {
    const result = this.transferWrite(address7, bytes);
    this.trace?.({ op: 'write', address: address7, bytes: bytes.slice(), length: bytes.length, result });
    return result;
  }

  read(address7: number, length: number): Uint8Array | 'nack' {
    const data = this.transferRead(address7, length);
    this.trace?.({
      op: 'read',
      address: address7,
      bytes: data === 'nack' ? new Uint8Array(0) : data.slice(),
      length,
      result: data === 'nack' ? 'nack' : 'ack',
    });
    return data;
  }

  private transferWrite(address7: number, bytes: Uint8Array): WriteResult {
    if (address7 === 0) {
      if (this.generalCallWakes) {
        for (const a of this.chips) {
          if (!a.chip.awake && a.chip.wake()) {
            a.pointer = 0;
            a.busyUntil = this.now() + a.chip.wakeDelayMs;
          }
        }
      }
      return 'nack';
    }
    const a = this.responder(address7);
    if (a === undefined) return 'nack';
    const word = bytes[0];
    if (word === undefined) return 'ack';
    switch (word) {
      case 0x00:
        a.pointer = 0;
        return 'ack';
      case 0x01:
        a.chip.sleep();
        return 'ack';
      case 0x02:
        a.chip.idle();
        return 'ack';
      case 0x03: {
        if (bytes.length === 1) return 'ack';
        // The chip's execution time runs from the end of the command write; the emulator's own
        // computing (P-256 in JavaScript) happens inside it, as the chip's does, not after it.
        const started = this.now();
        const { execMs } = a.chip.execute(bytes.subarray(1));
        a.pointer = 0;
        a.busyUntil = started + execMs;
        a.commandPending = true;
        a.nackedSinceCommand = 0;
        return 'ack';
      }
      default:
        return 'nack';
    }
  }

  private transferRead(address7: number, length: number): Uint8Array | 'nack' {
    if (address7 === 0) return 'nack';
    const a = this.responder(address7);
    if (a === undefined) return 'nack';
    const out = new Uint8Array(Math.max(0, length)).fill(0xff);
    const buffer = a.chip.output;
    const available = buffer.subarray(
      Math.min(a.pointer, buffer.length),
      Math.min(a.pointer + length, buffer.length),
    );
    out.set(available);
    a.pointer += out.length;
    return out;
  }

  /** The chip that ACKs this address right now, after a watchdog check; undefined = NACK. */
  private responder(address7: number): Attached | undefined {
    for (const a of this.chips) {
      a.chip.checkWatchdog();
      if (a.chip.i2cAddress !== address7) continue;
      if (!a.chip.awake) return undefined;
      const held = a.commandPending && this.holdBusy?.(a.nackedSinceCommand) === true;
      if (this.now() < a.busyUntil || held) {
        if (a.commandPending) a.nackedSinceCommand++;
        return undefined;
      }
      a.commandPending = false;
      return a;
    }
    return undefined;
  }
}
