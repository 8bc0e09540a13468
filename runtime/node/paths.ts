import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { NODE_NAME } from './config.js';

/** Where keyhop keeps node state: `$KEYHOP_HOME`, or `~/.keyhop`. */
export function keyhopHome(override?: string): string {
  return override ?? process.env.KEYHOP_HOME ?? join(homedir(), '.keyhop');
}

export interface NodePaths {
  dir: string;
  config: string;
  log: string;
  pid: string;
  control: string;
}

export function nodePaths(home: string, name: string): NodePaths {
  if (!NODE_NAME.test(name)) {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `node name must be 1-64 letters, digits, '-' or '_' (got "${name}")`,
    );
  }
  const dir = join(home, 'nodes', name);
  return {
    dir,
    config: join(dir, 'config.json'),
    log: join(dir, 'node.log'),
    pid: join(dir, 'pid'),
    control: join(dir, 'control.sock'),
  };
}
