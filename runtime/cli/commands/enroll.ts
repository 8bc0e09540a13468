import { readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { decodeTicket, type Ticket } from '../../enrollment/codec.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import { NODE_NAME } from '../../node/config.js';
import { type EnrollResult, enrollDevice } from '../../node/enroll-device.js';
import { keyhopHome } from '../../node/paths.js';
import { Router } from '../../routing/router.js';
import { TcpTransport } from '../../transports/tcp/tcp-transport.js';
import { print } from '../output.js';
import { secondsOption } from './node.js';

/** Exit status of an enrollment that left its request and has no answer yet (EX_TEMPFAIL: run again later). */
export const EXIT_PENDING = 75;

interface EnrollOptions {
  home?: string;
  json?: boolean;
  ticket?: string;
  directory?: string;
  wait?: string;
  force?: boolean;
  manifest?: string;
  report?: string;
  concurrency?: string;
  timeout?: string;
}

/** A ticket given as its text, `@file`, or `-` (stdin). */
async function ticketArg(text: string): Promise<Ticket> {
  let value = text;
  if (text === '-') value = await readStdin();
  else if (text.startsWith('@')) {
    value = await readFile(text.slice(1), 'utf8').catch((e: unknown) => {
      throw new KeyhopError(
        ErrorCodes.USAGE,
        `cannot read the ticket file ${text.slice(1)}: ${describeError(e)}`,
      );
    });
  }
  return decodeTicket(value);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function session(): { router: Router; close: () => Promise<void> } {
  const router = new Router({ name: 'keyhop-enroll' });
  TcpTransport.create(router);
  return { router, close: () => router.shutdown() };
}

interface ManifestDevice {
  name: string;
  ticket?: string;
  home?: string;
  identity?: string;
  directory?: string;
}

interface Manifest {
  ticket?: string;
  directory?: string;
  devices: ManifestDevice[];
}

function checkManifest(v: unknown, path: string): Manifest {
  const m = v as Partial<Manifest>;
  const bad = (why: string) => new KeyhopError(ErrorCodes.DECODE_INVALID, `manifest ${path}: ${why}`);
  if (typeof m !== 'object' || m === null || !Array.isArray(m.devices))
    throw bad('needs "devices": [{ "name": …, "ticket": … }]');
  if (m.devices.length > 100_000) throw bad(`${m.devices.length} devices, more than 100000`);
  const names = new Set<string>();
  for (const [i, d] of m.devices.entries()) {
    if (typeof d?.name !== 'string' || !NODE_NAME.test(d.name))
      throw bad(`devices[${i}].name must be 1-64 letters, digits, '-' or '_'`);
    if (names.has(d.name)) throw bad(`device "${d.name}" is listed twice`);
    names.add(d.name);
    for (const k of ['ticket', 'home', 'identity', 'directory'] as const)
      if (d[k] !== undefined && typeof d[k] !== 'string') throw bad(`devices[${i}].${k} must be text`);
    if (d.ticket === undefined && m.ticket === undefined)
      throw bad(`device "${d.name}" has no ticket, and the manifest none for all`);
  }
  return m as Manifest;
}

interface ReportRow {
  name: string;
  home: string;
  outcome: 'enrolled' | 'already' | 'pending' | 'failed';
  identifier: string | null;
  expiresAt: string | null;
  attributes: Record<string, string>;
  error: { code: string; message: string } | null;
}

async function writeReport(path: string, report: unknown): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/**
 * Enrolls every device of a manifest, `concurrency` at a time over one TCP transport. A device
 * that fails is reported and the batch goes on; a device already enrolled with a valid credential
 * is skipped (so a re-run does only what is left); the report lists every device.
 */
async function enrollManifest(o: EnrollOptions): Promise<void> {
  const path = resolve(o.manifest!);
  const text = await readFile(path, 'utf8').catch((e: unknown) => {
    throw new KeyhopError(ErrorCodes.USAGE, `cannot read the manifest ${path}: ${describeError(e)}`);
  });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `manifest ${path} is not JSON: ${describeError(e)}`);
  }
  const manifest = checkManifest(raw, path);
  const base = dirname(path);
  const reportPath = resolve(o.report ?? join(base, `${basename(path, extname(path))}.report.json`));
  const concurrency = Number(o.concurrency ?? '16');
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256)
    throw new KeyhopError(ErrorCodes.USAGE, '--concurrency must be 1..256');
  const waitMs = o.wait ? secondsOption(o.wait, '--wait') * 1000 : 0;
  const timeoutMs = o.timeout ? secondsOption(o.timeout, '--timeout') * 1000 : 15_000;
  const total = manifest.devices.length;
  const tty = process.stderr.isTTY === true && !o.json;
  const bar = tty
    ? new SingleBar({
        format:
          'enrolling {bar} {value}/{total} | enrolled {enrolled} already {already} pending {pending} failed {failed} | {eta_formatted}',
        stream: process.stderr,
        hideCursor: true,
      })
    : undefined;
  const counts = { enrolled: 0, already: 0, pending: 0, failed: 0 };
  bar?.start(total, 0, counts);
  const rows: ReportRow[] = new Array(total);
  const startedAt = new Date().toISOString();
  const { router, close } = session();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < total; i = next++) {
      const d = manifest.devices[i]!;
      const home =
        d.home === undefined
          ? join(base, 'devices', d.name)
          : isAbsolute(d.home)
            ? d.home
            : join(base, d.home);
      let row: ReportRow;
      try {
        const ticket = decodeTicket(d.ticket ?? manifest.ticket!);
        const directory = d.directory ?? manifest.directory ?? o.directory;
        const r: EnrollResult = await enrollDevice({
          router,
          home,
          ...(d.identity !== undefined ? { identity: d.identity } : {}),
          ticket,
          ...(directory !== undefined ? { directory } : {}),
          waitMs,
          timeoutMs,
          ...(o.force ? { force: true } : {}),
        });
        row = {
          name: d.name,
          home,
          outcome: r.outcome,
          identifier: r.identifier,
          expiresAt: r.expiresAt,
          attributes: r.attributes,
          error: null,
        };
      } catch (e) {
        row = {
          name: d.name,
          home,
          outcome: 'failed',
          identifier: null,
          expiresAt: null,
          attributes: {},
          error: {
            code: isKeyhopError(e) ? ((e as { reason?: string }).reason ?? e.code) : ErrorCodes.INTERNAL,
            message: describeError(e),
          },
        };
      }
      rows[i] = row;
      counts[row.outcome]++;
      if (bar) bar.increment(1, counts);
      else if (!o.json)
        process.stderr.write(
          `${d.name} ${row.outcome}${row.identifier ? ` ${row.identifier}` : ''}${row.error ? ` [${row.error.code}] ${row.error.message}` : ''}\n`,
        );
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  } finally {
    bar?.stop();
    await close();
  }
  const report = {
    manifest: path,
    startedAt,
    finishedAt: new Date().toISOString(),
    total,
    ...counts,
    devices: rows,
  };
  await writeReport(reportPath, report);
  print(
    o,
    { ...report, report: reportPath, devices: undefined },
    () =>
      `${total} devices: ${counts.enrolled} enrolled, ${counts.already} already, ${counts.pending} pending, ${counts.failed} failed; report: ${reportPath}`,
  );
  if (counts.failed > 0) process.exitCode = 1;
  else if (counts.pending > 0) process.exitCode = EXIT_PENDING;
}

export function registerEnrollCommand(program: Command): void {
  program
    .command('enroll')
    .description(
      `enroll an identity with an authority: --ticket alone over a secure channel to the authority (one-time code); with --directory through an enrollment directory while the authority may be offline (X3DH; exit ${EXIT_PENDING} while the answer is not there, run again to collect it); --manifest for a whole fleet`,
    )
    .argument('[identity]', 'identity in KEYHOP_HOME (default "default", made when missing)')
    .option('--ticket <ticket>', 'the ticket (keyhop-ticket:…), @file, or - for stdin')
    .option('--directory <route>', 'route to a node running an enrollment directory (X3DH)')
    .option('--wait <seconds>', 'with --directory: wait this long for the answer (units s, m, h)')
    .option('--force', 'enroll again even if the identity holds a valid credential from this authority')
    .option(
      '--manifest <file>',
      'enroll every device of a manifest ({"devices":[{"name","ticket","home"?}]}), each in its own home (default devices/<name> beside the manifest)',
    )
    .option('--report <file>', 'with --manifest: where the JSON report goes (default <manifest>.report.json)')
    .option('--concurrency <n>', 'with --manifest: devices enrolled at once', '16')
    .option('--timeout <seconds>', 'how long to wait for the authority or directory to answer', '15')
    .option('--json', 'machine-readable output')
    .action(async (identity: string | undefined, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<EnrollOptions>();
      if (o.manifest) {
        if (o.ticket || identity)
          throw new KeyhopError(
            ErrorCodes.USAGE,
            '--manifest names its devices and tickets: no identity or --ticket with it',
          );
        await enrollManifest(o);
        return;
      }
      if (!o.ticket)
        throw new KeyhopError(
          ErrorCodes.USAGE,
          'give --ticket <ticket> (from keyhop authority ticket create), or --manifest',
        );
      const ticket = await ticketArg(o.ticket);
      const { router, close } = session();
      let r: EnrollResult;
      try {
        r = await enrollDevice({
          router,
          home: keyhopHome(o.home),
          ...(identity !== undefined ? { identity } : {}),
          ticket,
          ...(o.directory !== undefined ? { directory: o.directory } : {}),
          waitMs: o.wait ? secondsOption(o.wait, '--wait') * 1000 : 0,
          timeoutMs: secondsOption(o.timeout ?? '15', '--timeout') * 1000,
          ...(o.force ? { force: true } : {}),
          onCreated: (id) =>
            process.stderr.write(`keyhop: created identity "${identity ?? 'default'}" (${id})\n`),
        });
      } finally {
        await close();
      }
      print(o, r, (x) =>
        x.outcome === 'pending'
          ? `enrollment request left at ${o.directory}; the authority answers when it next runs: run this again to collect the credential`
          : `${x.identity} (${x.identifier}) ${x.outcome === 'already' ? 'is already enrolled' : 'enrolled'} with authority ${x.authority}; credential valid until ${x.expiresAt}${
              Object.keys(x.attributes).length
                ? `: ${Object.entries(x.attributes)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}`
                : ''
            }`,
      );
      if (r.outcome === 'pending') process.exitCode = EXIT_PENDING;
    });
}
