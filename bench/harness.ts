import { existsSync } from 'node:fs';
import { arch, cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `--key=value` (or bare `--flag`, which reads as "true") options from the command line. */
export type BenchFlags = Readonly<Record<string, string>>;

export interface BenchTable {
  columns: string[];
  rows: (string | number)[][];
}

/** What one benchmark hands back to the runner. */
export interface BenchReport {
  /** Everything that shaped the measurement (sizes, window, durations…). */
  parameters: Record<string, unknown>;
  /** The measured numbers, written to JSON as they are. */
  results: Record<string, unknown>;
  /** Extra top-level JSON fields (e.g. a target and whether it was met). */
  summary?: Record<string, unknown>;
  /** Human-readable form of the results. */
  table: BenchTable;
  /** Lines printed after the table. */
  notes?: string[];
}

export interface Benchmark {
  description: string;
  run(flags: BenchFlags): Promise<BenchReport>;
}

export interface MachineInfo {
  cpuModel: string;
  cpuCount: number;
  totalMemoryBytes: number;
  nodeVersion: string;
  platform: string;
  arch: string;
  osRelease: string;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cpuCount: list.length,
    totalMemoryBytes: totalmem(),
    nodeVersion: process.version,
    platform: process.platform,
    arch: arch(),
    osRelease: release(),
  };
}

/** Splits argv into benchmark names and `--key=value` flags. */
export function parseArgs(argv: readonly string[]): { names: string[]; flags: Record<string, string> } {
  const names: string[] = [];
  const flags: Record<string, string> = {};
  for (const arg of argv) {
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      if (eq < 0) flags[arg.slice(2)] = 'true';
      else flags[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (arg.length > 0) {
      names.push(arg);
    }
  }
  return { names, flags };
}

/** A positive integer flag, or `fallback` when absent. */
export function intFlag(flags: BenchFlags, name: string, fallback: number): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** A comma-separated list of positive integers, or `fallback` when absent. */
export function intListFlag(flags: BenchFlags, name: string, fallback: readonly number[]): number[] {
  const raw = flags[name];
  if (raw === undefined) return [...fallback];
  return raw.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name}: "${s}" is not a positive integer`);
    return n;
  });
}

export function formatTable(table: BenchTable): string {
  const cells = [table.columns, ...table.rows.map((r) => r.map(String))];
  const widths = table.columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: (string | number)[]) =>
    r
      .map((c, i) => {
        const s = String(c);
        const w = widths[i] ?? s.length;
        // Numbers right-aligned, text left-aligned.
        return typeof c === 'number' || /^[\d.,x%-]+$/.test(s) ? s.padStart(w) : s.padEnd(w);
      })
      .join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(table.columns), rule, ...table.rows.map(line)].join('\n');
}

/** The directory holding package.json, searched upwards from this file (works from src and dist). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

/** Samples `process.memoryUsage().rss` and keeps the peak, overall and since the last `reset()`. */
export class RssSampler {
  peak = 0;
  windowPeak = 0;
  private timer: NodeJS.Timeout | undefined;

  start(intervalMs = 50): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const rss = process.memoryUsage().rss;
    if (rss > this.peak) this.peak = rss;
    if (rss > this.windowPeak) this.windowPeak = rss;
    return rss;
  }

  /** Starts a new window; returns the peak of the one that ended. */
  reset(): number {
    const now = this.sample();
    const p = this.windowPeak;
    this.windowPeak = now;
    return p;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }
}
