import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { NodeConfig } from './config.js';
import { ControlServer } from './control-server.js';
import { MemoryRelief } from './memory-relief.js';
import { KeyhopNode } from './node.js';
import type { NodePaths } from './paths.js';

/**
 * Runs a node in this process until SIGINT/SIGTERM or a `node.stop` control request, then shuts
 * it down cleanly: control socket closed, listeners closed, connections closed, pid file removed.
 * Logs are JSON lines on stderr (the background launcher points stderr at node.log).
 */
export async function runNodeProcess(
  config: NodeConfig,
  paths: NodePaths,
  home: string,
  onReady?: (node: KeyhopNode) => void,
): Promise<void> {
  const log = createLogger({ level: config.log.level, name: config.name });
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const node = await KeyhopNode.start(config, {
    log,
    home,
    onConfigChange: (c) =>
      writeNodeConfig(paths.config, c).catch((e: unknown) =>
        log.error({ err: describeError(e), path: paths.config }, 'could not save the node configuration'),
      ),
  });
  // Only a configuration that started is kept: a failed start leaves the stored one as it was.
  await writeNodeConfig(paths.config, node.config);
  // Under --expose-gc (the node processes keyhop starts), memory a flood left behind is given
  // back once the node is quiet again (memory-relief.ts).
  const gc = (globalThis as { gc?: () => void }).gc;
  const relief =
    typeof gc === 'function'
      ? new MemoryRelief({
          gc,
          activity: () => node.router.metrics.delivered,
          heapBytes: () => process.memoryUsage().heapTotal,
        })
      : undefined;
  let stopping: Promise<void> | undefined;
  let control: ControlServer | undefined;
  const stop = (why: string) => {
    stopping ??= (async () => {
      log.info({ why }, 'node stopping');
      relief?.stop();
      await control?.close();
      await node.stop();
      const pid = await readFile(paths.pid, 'utf8').catch(() => '');
      if (pid.trim() === String(process.pid)) await unlink(paths.pid).catch(() => undefined);
      log.info('node stopped');
    })();
    return stopping;
  };
  const finished = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => void stop(sig).then(resolve);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    control = undefined;
    ControlServer.start(node, paths.control, () => void stop('control request').then(resolve))
      .then(async (c) => {
        control = c;
        await writeFile(paths.pid, `${process.pid}\n`, { mode: 0o600 });
        log.info({ control: paths.control, ...node.describe() }, 'node ready');
        onReady?.(node);
      })
      .catch((e: unknown) => {
        log.error({ err: describeError(e) }, 'control socket failed');
        void stop('control socket failed').then(resolve);
        process.exitCode = 1;
      });
  });
  await finished;
}

/** Writes a node's configuration atomically (mode 0600): what `node start <name>` restores. */
export async function writeNodeConfig(path: string, config: NodeConfig): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}
