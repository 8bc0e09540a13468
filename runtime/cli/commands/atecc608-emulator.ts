import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Atecc608Chip, type ChipTiming } from '../../../vaults/atecc608/emulator/chip.js';
import { EmulatedI2cBus } from '../../../vaults/atecc608/emulator/i2c-bus.js';
import { I2cSocketServer } from '../../../vaults/atecc608/emulator/i2c-socket-server.js';
import { EmulatedKit, serveKitOnSerial } from '../../../vaults/atecc608/emulator/kit-device.js';
import { loadChipImage, saveChipImage } from '../../../vaults/atecc608/emulator/state-file.js';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';

interface EmulatorOptions {
  socket?: string;
  kitSerial?: string;
  bus: string;
  busHz: string;
  state?: string;
  timing: string;
  revision: string;
  seed?: string;
  detach?: boolean;
}

const STATE_SAVE_MS = 500;
const TIMINGS: Record<string, ChipTiming> = { real: 'datasheet', zero: 'zero' };

/**
 * `keyhop atecc608-emulator`: one emulated chip on an I2C bus served to the i2c-dev shim over a Unix
 * socket (docs/protocols/i2c-emulator.md) and/or as a kit on a serial port, until SIGINT/SIGTERM.
 * With --state the chip's persistent contents (zones, keys, locks, counters) survive restarts.
 */
export function registerAtecc608EmulatorCommand(program: Command): void {
  program
    .command('atecc608-emulator')
    .description('run an emulated ATECC608 for the i2c-dev shim (--socket) or as a kit on a serial port')
    .option('--socket <path>', 'serve I2C on this Unix socket (set KEYHOP_I2C_SOCKET to it with the shim)')
    .option('--kit-serial <path>', 'also speak the kit protocol on this serial port or PTY')
    .option('--bus <n>', 'I2C bus number the chip sits on', '1')
    .option(
      '--bus-hz <hz>',
      'bus clock; above ~133 kHz the general-call wake no longer wakes the chip',
      '100000',
    )
    .option('--state <file>', 'load the chip from this file (created if missing) and save it as it changes')
    .option('--timing <model>', 'real (datasheet execution times) or zero', 'real')
    .option('--revision <rev>', '608A or 608B (a new chip only)', '608B')
    .option('--seed <text>', 'seed of the RNG of a new chip (reproducible keys and nonces)')
    .option(
      '--detach',
      'run in the background: return once the chip is served; prints the pid on stdout (for kill), the rest on stderr',
    )
    .action(async (o: EmulatorOptions) => {
      if (o.detach) {
        await detach();
        return;
      }
      if (!o.socket && !o.kitSerial) {
        throw new KeyhopError(ErrorCodes.USAGE, 'give --socket, --kit-serial or both');
      }
      const timing = Object.hasOwn(TIMINGS, o.timing) ? TIMINGS[o.timing] : undefined;
      if (timing === undefined) throw new KeyhopError(ErrorCodes.USAGE, '--timing must be real or zero');
      if (o.revision !== '608A' && o.revision !== '608B') {
        throw new KeyhopError(ErrorCodes.USAGE, '--revision must be 608A or 608B');
      }
      const busNumber = Number(o.bus);
      const busHz = Number(o.busHz);
      if (!Number.isInteger(busNumber) || busNumber < 0 || busNumber > 255) {
        throw new KeyhopError(ErrorCodes.USAGE, '--bus must be 0-255');
      }
      if (!Number.isInteger(busHz) || busHz < 1000 || busHz > 3_400_000) {
        throw new KeyhopError(ErrorCodes.USAGE, '--bus-hz must be 1000-3400000');
      }

      const exists = o.state
        ? await access(o.state).then(
            () => true,
            () => false,
          )
        : false;
      const chip = exists
        ? Atecc608Chip.fromImage(await loadChipImage(o.state!), { timing })
        : new Atecc608Chip({
            timing,
            revision: o.revision,
            ...(o.seed !== undefined ? { seed: o.seed } : {}),
          });

      let saved = o.state ? JSON.stringify(chip.exportImage()) : '';
      const save = async () => {
        if (!o.state) return;
        const image = chip.exportImage();
        const text = JSON.stringify(image);
        if (text === saved) return;
        await saveChipImage(o.state, image);
        saved = text;
      };
      if (o.state && !exists) await saveChipImage(o.state, chip.exportImage());
      const saver = o.state
        ? setInterval(() => void save().catch(reportSaveError), STATE_SAVE_MS)
        : undefined;

      const bus = new EmulatedI2cBus({ busHz });
      bus.attach(chip);
      const server = o.socket
        ? await I2cSocketServer.listen(o.socket, new Map([[busNumber, bus]]))
        : undefined;
      const kit = o.kitSerial ? await serveKitOnSerial(o.kitSerial, new EmulatedKit(chip)) : undefined;

      const address = `0x${chip.i2cAddress.toString(16)}`;
      const banner =
        `ATECC${chip.revision} emulator (${o.timing} timing), I2C address ${address} on bus ${busNumber} at ${busHz} Hz\n` +
        (server
          ? `  I2C: ${server.path} (LD_PRELOAD=native/testing/build/i2c_shim.so KEYHOP_I2C_SOCKET=${server.path})\n`
          : '') +
        (kit ? `  kit protocol on ${kit.path}\n` : '') +
        (o.state ? `  state: ${o.state}\n` : '  state: memory only (gone when this stops)\n');
      process.stdout.write(banner);
      // Started by --detach: tell the parent we serve the chip, then cut the last tie to it.
      if (process.send) {
        process.send({ ready: banner });
        process.disconnect();
      }

      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      if (saver) clearInterval(saver);
      await server?.close();
      await kit?.close();
      await save().catch(reportSaveError);
    });
}

/**
 * Starts this same command without --detach as a background process and returns once it serves
 * the chip (its banner ends with the state line), so the next command of a script can use it.
 */
async function detach(): Promise<void> {
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const args = process.argv.slice(2).filter((a) => a !== '--detach');
  // No pipes to the child (a caller waiting for our output to end must not wait for it): readiness
  // comes over an IPC channel the child closes once it serves the chip.
  const child = spawn(process.execPath, [main, ...args], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  const banner = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { ready?: string }) => resolve(m.ready ?? ''));
    child.once('exit', (code) =>
      reject(
        new KeyhopError(
          ErrorCodes.CONTROL_FAILED,
          `the emulator exited (${code}) before it served the chip: run it without --detach to see why`,
        ),
      ),
    );
  });
  child.unref();
  // Only the pid on stdout, so that a script can keep it: emulator=$(keyhop atecc608-emulator … --detach)
  process.stderr.write(
    `${banner}  running in the background as pid ${child.pid} (kill ${child.pid} stops it)\n`,
  );
  process.stdout.write(`${child.pid}\n`);
}

function reportSaveError(e: unknown): void {
  process.stderr.write(`keyhop: could not save the emulator state: ${describeError(e)}\n`);
}
