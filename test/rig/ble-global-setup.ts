/**
 * vitest globalSetup for the virtual BLE rig (test/rig/ble.ts). Runs in vitest's main process:
 * the btvirt lease of every worker is taken in this process's name, so btvirt survives worker
 * recycling and is stopped (by pid) once, at the end of the run, if the rig started it.
 */
import { stopBtvirt } from './ble.js';

export function setup(): void {
  // Inherited by the worker processes, which are forked after globalSetup ran.
  process.env.KEYHOP_BTVIRT_OWNER = String(process.pid);
}

export async function teardown(): Promise<void> {
  await stopBtvirt();
}
