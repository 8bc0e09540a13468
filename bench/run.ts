/**
 * Benchmark runner. `npm run bench` runs every benchmark; `npm run bench -- routing` only the
 * named ones. Options are `--key=value` and go to every selected benchmark (e.g. the routing
 * benchmark reads --sizes=64,1024 --setups=plain,onehop --rounds=3 --window=64 --warmup-ms=400
 * --duration-ms=1100).
 * Each benchmark prints a table and writes bench/results/<name>.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../runtime/errors.js';
import { atecc608Benchmark } from './atecc608.js';
import { attackBenchmark } from './attack.js';
import { channelBenchmark } from './channel.js';
import { enrollmentBenchmark } from './enrollment.js';
import { type Benchmark, formatTable, machineInfo, packageRoot, parseArgs } from './harness.js';
import { linksBenchmark } from './links.js';
import { mqttBenchmark } from './mqtt.js';
import { routingBenchmark } from './routing.js';
import { soakBenchmark } from './soak.js';
import { vaultsBenchmark } from './vaults.js';

/** Every benchmark, by the name used on the command line and for the results file. */
const benchmarks: Record<string, Benchmark> = {
  routing: routingBenchmark,
  channel: channelBenchmark,
  links: linksBenchmark,
  vaults: vaultsBenchmark,
  atecc608: atecc608Benchmark,
  enrollment: enrollmentBenchmark,
  mqtt: mqttBenchmark,
  soak: soakBenchmark,
  attack: attackBenchmark,
};

function usage(): string {
  const list = Object.entries(benchmarks)
    .map(([name, b]) => `  ${name.padEnd(10)} ${b.description}`)
    .join('\n');
  return `usage: npm run bench [-- <name>... [--key=value...]]\n\nbenchmarks:\n${list}\n`;
}

async function main(argv: readonly string[]): Promise<number> {
  const { names, flags } = parseArgs(argv);
  if (flags.help !== undefined) {
    process.stdout.write(usage());
    return 0;
  }
  const unknown = names.filter((n) => !Object.hasOwn(benchmarks, n));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}\n\n${usage()}`);
    return 2;
  }
  const selected = names.length > 0 ? [...new Set(names)] : Object.keys(benchmarks);
  const resultsDir = join(packageRoot(), 'bench', 'results');
  await mkdir(resultsDir, { recursive: true });
  const machine = machineInfo();
  process.stdout.write(
    `machine: ${machine.cpuModel}, ${machine.cpuCount} CPUs, ${(machine.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, ` +
      `node ${machine.nodeVersion} ${machine.platform}/${machine.arch}\n`,
  );

  for (const name of selected) {
    const bench = benchmarks[name]!;
    const date = new Date().toISOString();
    process.stdout.write(`\n== ${name}: ${bench.description}\n`);
    const report = await bench.run(flags);
    process.stdout.write(`\n${formatTable(report.table)}\n\n`);
    for (const note of report.notes ?? []) process.stdout.write(`${note}\n`);
    const json = {
      name,
      date,
      machine,
      parameters: report.parameters,
      results: report.results,
      ...report.summary,
    };
    const file = join(resultsDir, `${name}.json`);
    await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
    process.stdout.write(`results written to ${file}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(
      `benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : describeError(e)}\n`,
    );
    process.exitCode = 1;
  },
);
