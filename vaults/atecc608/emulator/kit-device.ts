import type { SerialPort } from 'serialport';
import type { HidDeviceLike } from '../links/kit-hid.js';
import { KitLineBuffer } from '../links/kit-lines.js';
import {
  formatKitReply,
  fromHex,
  hex2,
  KIT_MAX_LINE,
  KIT_STATUS_BY_CHIP_STATUS,
  KitStatus,
  matchKeyword,
  parseKitRequest,
} from '../links/kit-protocol.js';
import { closeSerialPort, openSerialPort } from '../links/kit-serial.js';
import { WAKE_SELFTEST_FAILED, WAKE_TOKEN } from '../protocol/packet.js';

/**
 * The board side of the kit protocol (atecc608.md §4.4, §8 (c)): what a Microchip kit's firmware
 * does with each ASCII line, in front of one or more emulated chips. Modelled on Microchip's own
 * parser (`app/kit_host/ascii_kit_host.c`): every line is lowercased, each word may be abbreviated
 * to any prefix of its keyword (`E:t` = `ecc:talk`, `s:` = `sha:`), replies are
 * `<ATCA_STATUS hex>(<hex>)`.
 *
 * Error replies (chosen to match that parser):
 * - unparseable line, unknown target or command, bad hex → `E2()` (ATCA_BAD_PARAM);
 * - `board:device(NN)` past the last device → `E0()` (ATCA_FUNC_FAIL);
 * - a line over KIT_MAX_LINE characters → `E4()` (ATCA_INVALID_SIZE);
 * - talk while the chip sleeps or idles → `F0()` (ATCA_COMM_FAIL: the chip NACKs its address).
 * `physical:select` with an unknown address answers `00()` and keeps the selection, as Microchip's does.
 */

/** What the kit needs of a chip: the surface of `Atecc608Chip` (emulator/chip.ts). */
export interface KitChip {
  readonly awake: boolean;
  /** false when the chip was already awake. */
  wake(): boolean;
  idle(): void;
  sleep(): void;
  execute(packet: Uint8Array): { response: Uint8Array; execMs: number };
  /** 7-bit address. */
  readonly i2cAddress: number;
  /** The output buffer: the wake token (or the self-test-failed one) after a wake, else the last response. */
  readonly output?: Uint8Array;
  /** tWHI (or tWHIST) the kit waits after the wake pulse, ms. */
  readonly wakeDelayMs?: number;
}

export interface EmulatedKitDevice {
  readonly chip: KitChip;
  /** Name in the `board:device` answer. Default `ECC608`; `ECC108` imitates old AT88CK firmware (§7.12). */
  readonly name?: string;
  /** Default `TWI` (I2C). */
  readonly iface?: string;
}

export interface EmulatedKitOptions {
  /**
   * How talk reports a chip error status: `raw` (default) returns the chip's 4-byte status packet
   * with kit status 00; `atca-status` answers like `ascii_kit_host` (the ATCA_STATUS, no data:
   * `F4()` for 0x0F).
   */
  readonly talkErrors?: 'raw' | 'atca-status';
}

/** Anything that answers kit protocol lines (the emulated kit, or a scripted fake in tests). */
export interface KitLineHandler {
  /** One request line (without `\n`) → one reply line (without `\n`). */
  handleLine(line: string): Promise<string>;
}

const TRACE_LIMIT = 1000;

export class EmulatedKit implements KitLineHandler {
  private readonly devices: readonly Required<EmulatedKitDevice>[];
  private selected: Required<EmulatedKitDevice>;
  private queue: Promise<unknown> = Promise.resolve();
  /** Request lines as received (the first TRACE_LIMIT), for tests comparing with a cryptoauthlib trace. */
  readonly requests: string[] = [];

  constructor(
    devices: KitChip | EmulatedKitDevice | readonly (KitChip | EmulatedKitDevice)[],
    private readonly options: EmulatedKitOptions = {},
  ) {
    const list = Array.isArray(devices) ? devices : [devices];
    this.devices = list.map((d: KitChip | EmulatedKitDevice) => {
      const dev = 'chip' in d ? d : { chip: d };
      return { chip: dev.chip, name: dev.name ?? 'ECC608', iface: dev.iface ?? 'TWI' };
    });
    const first = this.devices[0];
    if (first === undefined) throw new Error('EmulatedKit needs at least one chip');
    this.selected = first;
  }

  /** The chip `physical:select` chose (the first one until then). */
  get chip(): KitChip {
    return this.selected.chip;
  }

  /** Lines are handled one at a time, like the kit's single firmware loop. */
  handleLine(line: string): Promise<string> {
    const run = this.queue.then(() => this.process(line));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async process(line: string): Promise<string> {
    if (this.requests.length < TRACE_LIMIT) this.requests.push(line);
    if (line.length > KIT_MAX_LINE) return status(KitStatus.INVALID_SIZE);
    const req = parseKitRequest(line);
    if (req === undefined) return status(KitStatus.BAD_PARAM);
    const [targetWord, command, sub] = req.words;
    const target = matchKeyword(targetWord, ['board', 'ecc', 'sha', 'ta']);
    if (target === 'board')
      return this.board(matchKeyword(command, ['version', 'firmware', 'device']), req.arg);
    // "sha" is the same device map as "ecc" (the 2016 kit code used `s:t(`); no TA devices here.
    if (target === 'ecc' || target === 'sha') {
      const cmd = matchKeyword(command, ['wake', 'idle', 'sleep', 'talk', 'physical']);
      if (cmd === 'physical') return this.physical(matchKeyword(sub, ['select', 'interface']), req.arg);
      return this.device(cmd, req.arg);
    }
    return status(KitStatus.BAD_PARAM);
  }

  private board(cmd: string | undefined, arg: string): string {
    if (cmd === 'version' || cmd === 'firmware') return status(KitStatus.SUCCESS);
    if (cmd !== 'device') return status(KitStatus.BAD_PARAM);
    const index = /^[0-9a-f]{1,2}$/.test(arg) ? Number.parseInt(arg, 16) : -1;
    const dev = this.devices[index];
    if (dev === undefined) return status(KitStatus.FUNC_FAIL);
    return `${dev.name} ${dev.iface} 00(${hex2((dev.chip.i2cAddress << 1) & 0xff)})`;
  }

  private physical(sub: string | undefined, arg: string): string {
    if (sub === 'interface') return status(KitStatus.SUCCESS);
    if (sub !== 'select') return status(KitStatus.BAD_PARAM);
    const address8 = /^[0-9a-f]{1,2}$/.test(arg) ? Number.parseInt(arg, 16) : -1;
    const dev = this.devices.find((d) => ((d.chip.i2cAddress << 1) & 0xff) === address8);
    if (dev !== undefined) this.selected = dev;
    return status(KitStatus.SUCCESS);
  }

  private async device(cmd: string | undefined, arg: string): Promise<string> {
    const chip = this.selected.chip;
    switch (cmd) {
      case 'wake':
        return this.wake(chip);
      case 'idle':
        if (chip.awake) chip.idle();
        return status(KitStatus.SUCCESS);
      case 'sleep':
        if (chip.awake) chip.sleep();
        return status(KitStatus.SUCCESS);
      case 'talk':
        return this.talk(chip, arg);
      default:
        return status(KitStatus.BAD_PARAM);
    }
  }

  /**
   * The kit sends the wake pulse, waits tWHI and reads 4 bytes: what the chip gives. A chip that was
   * already awake ignores the pulse and the read returns its output buffer (§1.2), which a host
   * must not take for the token. A failed self-test answers like `ascii_kit_host`: D7 + the token.
   */
  private async wake(chip: KitChip): Promise<string> {
    const woke = chip.wake();
    const delay = chip.wakeDelayMs ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const output = chip.output ?? WAKE_TOKEN;
    if (woke && sameBytes(output, WAKE_SELFTEST_FAILED)) {
      return formatKitReply(KitStatus.STATUS_SELFTEST_ERROR, output);
    }
    return formatKitReply(KitStatus.SUCCESS, woke ? output : output.subarray(0, 4));
  }

  private async talk(chip: KitChip, arg: string): Promise<string> {
    let packet: Uint8Array;
    try {
      packet = fromHex(arg, 'talk');
    } catch {
      return status(KitStatus.BAD_PARAM);
    }
    if (packet.length === 0) return status(KitStatus.BAD_PARAM);
    if (!chip.awake) return status(KitStatus.COMM_FAIL);
    const { response, execMs } = chip.execute(packet);
    // No response: the watchdog put the chip to sleep and it NACKed.
    if (response.length === 0) return status(KitStatus.COMM_FAIL);
    // The kit polls the chip until it answers: the host sees the execution time as reply latency.
    if (execMs > 0) await new Promise((r) => setTimeout(r, execMs));
    if (this.options.talkErrors === 'atca-status' && response.length === 4 && response[1] !== 0) {
      return status(KIT_STATUS_BY_CHIP_STATUS.get(response[1]!) ?? KitStatus.GEN_FAIL);
    }
    return formatKitReply(KitStatus.SUCCESS, response);
  }
}

function status(s: number): string {
  return formatKitReply(s);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ---------------------------------------------------------------- HID endpoint

/**
 * The kit's USB HID endpoint as a node-hid device: takes 65-byte writes (report id 0 + 64 bytes,
 * zero-padded, as hidapi sends them), answers with 64-byte zero-padded input reports (§4.4).
 */
export class EmulatedHidKit implements HidDeviceLike {
  private readonly input: KitLineBuffer;
  private readonly reports: Buffer[] = [];
  private readonly readers: (() => void)[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Output reports received (for tests). */
  reportsWritten = 0;

  constructor(
    private readonly handler: KitLineHandler,
    private readonly reportSize = 64,
  ) {
    this.input = new KitLineBuffer(KIT_MAX_LINE);
  }

  async write(data: number[]): Promise<number> {
    if (this.closed) throw new Error('HID device closed');
    // hidapi: the first byte is the report id (0 = the only report), then the report's bytes.
    if (data.length !== this.reportSize + 1 || data[0] !== 0) {
      throw new Error(
        `kit HID output report must be report id 0 + ${this.reportSize} bytes, got ${data.length}`,
      );
    }
    if (data.some((b) => !Number.isInteger(b) || b < 0 || b > 255))
      throw new Error('HID report bytes must be bytes');
    this.reportsWritten++;
    this.input.push(Uint8Array.from(data.slice(1)));
    for (let entry = this.input.next(); entry !== undefined; entry = this.input.next()) {
      const line = entry;
      this.queue = this.queue.then(async () => {
        const reply =
          typeof line === 'string' ? await this.handler.handleLine(line) : status(KitStatus.INVALID_SIZE);
        this.enqueueReply(reply);
      });
    }
    return data.length;
  }

  async read(timeoutMs: number): Promise<Buffer | undefined> {
    if (this.reports.length === 0 && !this.closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, timeoutMs);
        const readers = this.readers;
        function done(): void {
          clearTimeout(t);
          const i = readers.indexOf(done);
          if (i >= 0) readers.splice(i, 1);
          resolve();
        }
        readers.push(done);
      });
    }
    if (this.closed) throw new Error('HID device closed');
    return this.reports.shift();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.readers.slice()) r();
  }

  private enqueueReply(line: string): void {
    if (this.closed) return;
    const bytes = Buffer.from(`${line}\n`, 'latin1');
    for (let off = 0; off < bytes.length; off += this.reportSize) {
      const report = Buffer.alloc(this.reportSize);
      bytes.copy(report, 0, off, Math.min(bytes.length, off + this.reportSize));
      this.reports.push(report);
    }
    for (const r of this.readers.slice()) r();
  }
}

// ---------------------------------------------------------------- serial (PTY) endpoint

export interface KitSerialServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Serves a kit on one end of a serial line (a socat PTY pair in tests: the host opens the other
 * end with openKitSerial). One reply line per request line.
 */
export async function serveKitOnSerial(
  path: string,
  handler: KitLineHandler,
  options: { baudRate?: number } = {},
): Promise<KitSerialServer> {
  const port: SerialPort = await openSerialPort(path, options.baudRate ?? 115_200, 'emulated kit');
  const input = new KitLineBuffer(KIT_MAX_LINE);
  let queue: Promise<unknown> = Promise.resolve();
  port.on('data', (chunk: Buffer) => {
    input.push(chunk);
    for (let entry = input.next(); entry !== undefined; entry = input.next()) {
      const line = entry;
      queue = queue
        .then(async () => {
          const reply =
            typeof line === 'string' ? await handler.handleLine(line) : status(KitStatus.INVALID_SIZE);
          if (port.isOpen) port.write(Buffer.from(`${reply}\n`, 'latin1'));
        })
        .catch(() => undefined);
    }
  });
  port.on('error', () => undefined);
  return {
    path,
    // A reply still being worked on is dropped (port.isOpen is false by then).
    close: () => closeSerialPort(port),
  };
}
