/**
 * `npm run bench -- links`: keyhop's non-IP links against what the link itself can carry, serial
 * (bench/links-serial.ts) then BLE on the virtual controllers (bench/links-ble.ts). One summary
 * table with a `link` column; each part's details follow in the notes. Flags: see both files.
 */
import { type BenchFlags, type Benchmark, type BenchReport, formatTable } from './harness.js';
import { bleLinksBench, SUMMARY_COLUMNS } from './links-ble.js';
import { serialLinksBench } from './links-serial.js';
import { sizeLabel } from './support.js';

async function run(flags: BenchFlags): Promise<BenchReport> {
  const serial = await serialLinksBench(flags);
  const ble = await bleLinksBench(flags);
  const serialRows: (string | number)[][] =
    serial.rows.length > 0
      ? serial.rows.map((r) => [
          'serial',
          `${r.baud} baud, reliability ${r.reliable ? 'on' : 'off'}`,
          `goodput ${sizeLabel(r.payloadBytes)} B/s`,
          r.goodputBytesPerSec.toFixed(0),
          r.lineCapacityBytesPerSec,
          'line capacity (baud / 10)',
          r.ratio.toFixed(3),
          `>= ${r.target} ${r.targetMet ? 'MET' : 'NOT MET'}`,
        ])
      : [['serial', '', String(serial.results.skipped ?? 'skipped'), '', '', '', '', '']];
  return {
    parameters: { serial: serial.parameters, ble: ble.parameters },
    results: { serial: serial.results, ble: ble.results },
    summary: {
      targets: {
        serial: serial.summary?.serialTargets ?? { skipped: serial.results.skipped },
        // No pass mark was set for BLE: its ratios are reported, not judged.
        ble: ble.sections.length > 0 ? 'none set (ratios reported)' : { skipped: ble.results.skipped },
      },
    },
    table: { columns: SUMMARY_COLUMNS, rows: [...serialRows, ...ble.table.rows] },
    notes: ['Serial details:', formatTable(serial.table), ...(serial.notes ?? []), '', ...(ble.notes ?? [])],
  };
}

export const linksBenchmark: Benchmark = {
  description:
    'serial goodput at 115 200 baud (reliability off/on); BLE goodput, latency, handshake and framing at MTU 23 and 247',
  run,
};
