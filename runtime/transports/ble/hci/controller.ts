/**
 * Puts the controller a central or peripheral selected (target.ts) under its stack's Hci. Either
 * kind gets a socket of our own, per instance (so several centrals and peripherals can run in one
 * process), that resets the controller and then reports it up with a 'state' event; the stack
 * then runs its usual power-up (attach.ts).
 */
import type { AttachedController } from './attach.js';
import { attachKernel } from './kernel-socket.js';
import type { HciDrivers } from './load.js';
import type { StackHci } from './stack-types.js';
import type { HciTarget } from './target.js';
import { attachUart } from './uart-socket.js';

/**
 * Installs the socket for `target` into `hci` and runs `init` (the stack's bindings.init()).
 * `powerUp` is what the stack does once the controller answered HCI_Reset (its own pollIsDevUp
 * body).
 */
export function attachController(
  hci: StackHci,
  drivers: HciDrivers,
  target: HciTarget,
  powerUp: () => void,
  init: () => void,
): AttachedController {
  return target.kind === 'uart'
    ? attachUart(hci, drivers.UartSocket, target, powerUp, init)
    : attachKernel(hci, drivers.nativeSocket(), target, powerUp, init);
}
