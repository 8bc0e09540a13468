import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import type { PairingOutcome, ScanCandidate } from '../../node/ble-node.js';
import { controlCall } from '../../node/control-client.js';
import { keyhopHome, nodePaths } from '../../node/paths.js';
import type { PairedPeer } from '../../pairing/paired-store.js';
import { print } from '../output.js';

interface PairOptions {
  home?: string;
  json?: boolean;
  at?: string;
  device?: string;
  scanMs: string;
  expect?: string;
  yes?: boolean;
  timeout: string;
}

/** One answer from standard input (a terminal or a pipe); '' at end of input. */
async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  try {
    process.stderr.write(question);
    const line = await new Promise<string>((resolve) => {
      rl.once('line', resolve);
      rl.once('close', () => resolve(''));
    });
    return line.trim();
  } finally {
    rl.close();
  }
}

function describeCandidate(c: ScanCandidate, i: number): string {
  const state = c.pairable === null ? 'not keyhop' : c.pairable ? 'unpaired' : 'paired';
  const hint = c.identifierHint ? ` I${c.identifierHint}…` : '';
  return `  ${i + 1}) ${c.name ?? '(no name)'}  ${c.address}  ${state}${hint}  rssi ${c.rssi}`;
}

function describeOutcome(o: PairingOutcome): string {
  if (!o.paired) return `not paired: ${o.reason ?? 'refused'}`;
  return `paired with ${o.name} (${o.identifier})\nreachable through this gateway at: ${o.relay ?? '-'}`;
}

async function chooseDevice(o: PairOptions, control: string): Promise<string> {
  if (o.device) return o.device;
  const ms = Number(o.scanMs);
  if (!Number.isFinite(ms) || ms <= 0)
    throw new KeyhopError(ErrorCodes.USAGE, '--scan-ms must be a positive number');
  await controlCall(control, 'ble.paired'); // the node runs and has BLE, before saying we scan
  process.stderr.write(`scanning for ${ms} ms...\n`);
  const all = (await controlCall(control, 'ble.scan', { durationMs: ms }, ms + 15_000)) as ScanCandidate[];
  const candidates = all.filter((c) => c.pairable === true);
  if (candidates.length === 0) {
    throw new KeyhopError(ErrorCodes.CONNECT_FAILED, `no unpaired keyhop device found (${all.length} seen)`);
  }
  process.stderr.write(`unpaired devices:\n${candidates.map(describeCandidate).join('\n')}\n`);
  if (candidates.length === 1 && o.yes) return candidates[0]!.address || candidates[0]!.id;
  const answer = await ask(`pair with which device? [1-${candidates.length}] `);
  const n = Number(answer);
  if (!Number.isInteger(n) || n < 1 || n > candidates.length) {
    throw new KeyhopError(ErrorCodes.USAGE, `no device chosen (answer "${answer}")`);
  }
  return candidates[n - 1]!.address || candidates[n - 1]!.id;
}

export function registerPairCommands(program: Command): void {
  const pair = program
    .command('pair')
    .description(
      'pair a BLE device with a gateway node: scan, connect, secure channel, compare a 6-digit code, store, relay',
    )
    .option('--at <node>', 'the gateway node (its config has ble.role "central"); required')
    .option('--device <address|name>', 'pair this device instead of choosing from a scan')
    .option('--scan-ms <ms>', 'how long to scan', '5000')
    .option(
      '--expect <identifier>',
      "the device's identifier from its label or QR code (replaces the code comparison)",
    )
    .option(
      '--yes',
      'accept the code without asking (only with --expect, or when the code is checked elsewhere)',
    )
    .option('--timeout <ms>', 'give up on an unanswered pairing after this time', '120000')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<PairOptions>();
      if (!o.at) throw new KeyhopError(ErrorCodes.USAGE, 'keyhop pair needs --at <gateway node>');
      const control = nodePaths(keyhopHome(o.home), o.at).control;
      const timeoutMs = Number(o.timeout);
      const target = await chooseDevice(o, control);
      process.stderr.write(`connecting to ${target}...\n`);
      const started = (await controlCall(
        control,
        'ble.pair.start',
        { target, timeoutMs, ...(o.expect ? { expectIdentifier: o.expect } : {}) },
        90_000,
      )) as PairingOutcome | { id: string; sas: string; identifier: string; name: string };
      let outcome: PairingOutcome;
      if ('paired' in started) {
        outcome = started;
      } else {
        const code = `${started.sas.slice(0, 3)} ${started.sas.slice(3)}`;
        process.stderr.write(`\npairing code: ${code}\ndevice: ${started.name} (${started.identifier})\n`);
        const accepted = o.yes
          ? true
          : /^y(es)?$/i.test(await ask('does the device show the same code? [y/N] '));
        outcome = (await controlCall(
          control,
          'ble.pair.confirm',
          { id: started.id, accepted },
          timeoutMs + 15_000,
        )) as PairingOutcome;
      }
      print(o, outcome, describeOutcome);
      if (!outcome.paired) throw new KeyhopError(ErrorCodes.PAIRING_FAILED, outcome.reason ?? 'not paired');
    });

  pair
    .command('list')
    .description('peers this node paired with (keyhop pair list --at <node>)')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean; at?: string }>();
      if (!o.at) throw new KeyhopError(ErrorCodes.USAGE, 'keyhop pair list needs --at <node>');
      const r = (await controlCall(nodePaths(keyhopHome(o.home), o.at).control, 'ble.paired')) as {
        pairable: boolean | null;
        peers: PairedPeer[];
      };
      print(o, r, (d) =>
        [
          ...(d.pairable === null ? [] : [`pairable: ${d.pairable ? 'yes' : 'no'}`]),
          ...(d.peers.length === 0
            ? ['no paired peers']
            : d.peers.map((p) => `${p.role.padEnd(8)} ${p.name}  ${p.identifier}  ${p.pairedAt}`)),
        ].join('\n'),
      );
    });

  pair
    .command('open')
    .description(
      'let a paired device (ble.role "peripheral") accept a new pairing (keyhop pair open --at <node>)',
    )
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ home?: string; json?: boolean; at?: string }>();
      if (!o.at) throw new KeyhopError(ErrorCodes.USAGE, 'keyhop pair open needs --at <node>');
      const r = await controlCall(nodePaths(keyhopHome(o.home), o.at).control, 'ble.pairable', {
        pairable: true,
      });
      print(o, r, () => 'pairing open: the device advertises as unpaired');
    });
}
