/**
 * Kernel adapters (HCI_CHANNEL_USER through the socket package's native driver). CI's kernel has
 * no AF_BLUETOOTH, so a real adapter is never reached here: the glue is driven with a scripted
 * stand-in for the addon, and the real addon is only seen failing the way it fails on such a
 * kernel. kernel-socket.rig.test.ts runs both stacks over it against btvirt.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../../test/support/wait.js';
import { describeError, isKeyhopError } from '../../../errors.js';
import { KEYHOP_PROFILE } from '../gatt-link.js';
import type { FailureListener } from './attach.js';
import { createCentral, createPeripheral } from './index.js';
import { attachKernel, explainOpenError } from './kernel-socket.js';
import { loadBleno, loadNoble } from './load.js';
import type { StackHci, StackSocket } from './stack-types.js';
import { ScriptedUserChannel } from './test-support.js';

const RESET = '01030c00';
const RESET_DONE = '040e0401030c00';

/** The parts of a stack's Hci the glue uses, and the stack's init() in raw mode. */
function fakeStack() {
  const received: string[] = [];
  const hci = Object.assign(new EventEmitter(), {
    _socket: undefined as unknown as StackSocket,
    _isDevUp: null as boolean | null,
    pollIsDevUp() {},
    setSocketFilter() {
      this._socket.setFilter(Buffer.alloc(16));
    },
  });
  let poweredUp = 0;
  const init = () => {
    hci._socket.on('data', (d: Buffer) => received.push(d.toString('hex')));
    hci._socket.bindRaw();
    hci._socket.start();
    hci.pollIsDevUp();
  };
  return {
    hci: hci as StackHci,
    received,
    init,
    powerUp: () => {
      poweredUp++;
    },
    get poweredUp() {
      return poweredUp;
    },
  };
}

function attach(devId = 0) {
  const stack = fakeStack();
  const failures: { reason: string; code: string | undefined }[] = [];
  const controller = attachKernel(stack.hci, ScriptedUserChannel, { devId }, stack.powerUp, stack.init);
  const onFailure: FailureListener = (reason, code) => failures.push({ reason, code });
  controller.onFailure(onFailure);
  const native = ScriptedUserChannel.instances.at(-1)!;
  return { stack, controller, native, failures };
}

afterEach(() => {
  ScriptedUserChannel.instances.length = 0;
  ScriptedUserChannel.nextBind = undefined;
});

describe('kernel adapter glue (scripted addon)', () => {
  it('binds the user channel, resets, and reports up only on the reset completion', async () => {
    const { stack, controller, native, failures } = attach(1);
    expect(native.calls).toEqual(['bindUser(1)', 'start', `write ${RESET}`]);
    expect(stack.poweredUp).toBe(0);
    // Left over from whoever had the controller before: dropped.
    native.receive('0413050100000001');
    native.receive(RESET_DONE);
    expect(stack.poweredUp).toBe(1);
    expect(stack.hci._isDevUp).toBe(true);
    expect(stack.received).toEqual([]);
    native.receive('040e0401050c00');
    expect(stack.received).toEqual(['040e0401050c00']);
    stack.hci._socket.write(Buffer.from('01050c00', 'hex'));
    expect(native.writes.at(-1)!.toString('hex')).toBe('01050c00');
    expect(failures).toEqual([]);

    await controller.close();
    // A last reset (stops whatever the controller was doing and wakes the reader), then stop.
    expect(native.calls.slice(-2)).toEqual([`write ${RESET}`, 'stop']);
    const writes = native.writes.length;
    stack.hci._socket.write(Buffer.from('01050c00', 'hex'));
    native.receive('040e0401050c00');
    expect(native.writes).toHaveLength(writes);
    expect(stack.received).toHaveLength(1);
    await controller.close();
    expect(native.calls.filter((c) => c === 'stop')).toHaveLength(1);
  });

  it.each([
    ['Device or resource busy', /^hci0 is up in BlueZ .*btmgmt -i hci0 power off.*bluetooth\.service/],
    ['Operation not permitted', /^hci0: not permitted .*root.*cap_net_admin,cap_net_raw/],
    ['Too many users', /^hci0 is already taken by another program/],
    ['No such device', /^there is no hci0 .*\/sys\/class\/bluetooth/],
    ['Operation not possible due to RF-kill', /rfkill unblock bluetooth/],
    ['Invalid argument', /^hci0: cannot take the adapter: Invalid argument$/],
  ])('says what to do when the bind fails with "%s"', async (strerror, reason) => {
    ScriptedUserChannel.nextBind = { throws: strerror };
    const { stack, controller, native, failures } = attach(0);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.reason).toMatch(reason);
    expect(failures[0]!.code).toBeUndefined();
    // Nothing started, nothing to stop.
    expect(native.calls).toEqual(['bindUser(0)']);
    expect(stack.poweredUp).toBe(0);
    await controller.close();
    expect(native.calls).toEqual(['bindUser(0)']);
  });

  it('reports a kernel without AF_BLUETOOTH as UNSUPPORTED', async () => {
    ScriptedUserChannel.nextBind = { errno: 97, message: 'Address family not supported by protocol' };
    const { controller, native, failures } = attach(0);
    expect(failures).toEqual([
      {
        reason: expect.stringMatching(/^hci0: this kernel has no Bluetooth sockets \(no AF_BLUETOOTH/),
        code: 'UNSUPPORTED',
      },
    ]);
    await controller.close();
    expect(native.calls).toEqual(['bindUser(0)']);
  });

  it('fails on a refused reset, and on a write error once up', async () => {
    const refused = attach(0);
    refused.native.receive('040e04010c0c00'); // another command's completion: ignored
    refused.native.receive('040e0401030c03');
    expect(refused.failures.map((f) => f.reason)).toEqual([
      'hci0: cannot take the adapter: HCI_Reset failed (status 0x03)',
    ]);
    await refused.controller.close();
    // No reset on the way out after a failure; the socket is still stopped (and closed by it).
    expect(refused.native.calls.slice(-1)).toEqual(['stop']);

    const lost = attach(2);
    lost.native.receive(RESET_DONE);
    lost.native.emit('error', Object.assign(new Error('No such device'), { errno: 19, syscall: 'write' }));
    lost.native.emit('error', Object.assign(new Error('No such device'), { errno: 19, syscall: 'write' }));
    expect(lost.failures).toEqual([{ reason: 'hci2: write failed: No such device', code: undefined }]);
    await lost.controller.close();
  });

  it('reports a failure that came before the listener', () => {
    ScriptedUserChannel.nextBind = { throws: 'Device or resource busy' };
    const stack = fakeStack();
    const controller = attachKernel(stack.hci, ScriptedUserChannel, { devId: 3 }, stack.powerUp, stack.init);
    const late: string[] = [];
    controller.onFailure((reason) => late.push(reason));
    expect(late).toHaveLength(1);
    expect(late[0]).toMatch(/^hci3 is up in BlueZ/);
  });

  it('matches musl texts too', () => {
    expect(explainOpenError('hci0', new Error('Resource busy')).reason).toMatch(/power it off/);
    expect(explainOpenError('hci0', new Error('Permission denied')).reason).toMatch(/not permitted/);
  });
});

/** socket(AF_BLUETOOTH) fails here: asked of the real addon, without binding anything. */
async function kernelWithoutBluetooth(): Promise<string | undefined> {
  try {
    const { nativeSocket } = await loadNoble();
    await loadBleno();
    const probe = new (nativeSocket())() as unknown as EventEmitter & { isDevUp(): boolean };
    let errno: unknown;
    probe.on('error', (e: { errno?: unknown }) => {
      errno = e.errno;
    });
    probe.isDevUp(); // creates the socket, or emits why it cannot
    return errno === 97 ? undefined : 'this kernel has AF_BLUETOOTH';
  } catch (e) {
    return `BLE stacks or the native addon unavailable: ${describeError(e)}`;
  }
}

/** Handles that would keep the process alive (vitest's own pipes excluded). */
function ourResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'Timeout' || r === 'FSReqCallback' || r === 'ProcessWrap' || r === 'TTYWrap') {
      counts[r] = (counts[r] ?? 0) + 1;
    }
  }
  return counts;
}

const noBluetooth = await kernelWithoutBluetooth();

describe.skipIf(noBluetooth !== undefined)(
  'kernel adapter on a kernel without AF_BLUETOOTH (real addon)',
  () => {
    beforeAll(async () => {
      await Promise.all([loadNoble(), loadBleno()]);
    });

    it('fails start() of a central and a peripheral at once with UNSUPPORTED, leaving nothing behind', async () => {
      const before = ourResources();
      const hooks = ['exit', 'SIGINT'].map((e) => process.listenerCount(e));

      const central = createCentral({ hciDevice: 0 });
      // UNSUPPORTED, not TIMEOUT: start() failed at once rather than waiting out its deadline.
      const e = await central.start().catch((x: unknown) => x);
      expect(isKeyhopError(e, 'UNSUPPORTED')).toBe(true);
      expect((e as Error).message).toMatch(
        /^BLE central: hci0: this kernel has no Bluetooth sockets \(no AF_BLUETOOTH.*"hci": "\/dev\/ttyACM0"/,
      );
      // Stopped for good: start() again reports that, stop() is fine.
      expect(isKeyhopError(await central.start().catch((x: unknown) => x), 'UNSUPPORTED')).toBe(true);
      await central.stop();
      const scan = await central.scan({ services: [], durationMs: 10 }).catch((x: unknown) => x);
      expect(isKeyhopError(scan, 'CONNECTION_CLOSED')).toBe(true);

      const peripheral = createPeripheral({ hciDevice: 0 });
      const p = await peripheral
        .start({ name: 'x', profile: KEYHOP_PROFILE }, () => undefined)
        .catch((x: unknown) => x);
      expect(isKeyhopError(p, 'UNSUPPORTED')).toBe(true);
      expect((p as Error).message).toMatch(/^BLE peripheral: hci0: this kernel has no Bluetooth sockets/);
      await peripheral.stop();

      // Handles close asynchronously: wait until none is left over, then say which one if not.
      const leftOver = () => Object.entries(ourResources()).some(([kind, n]) => n > (before[kind] ?? 0));
      await until(() => !leftOver()).catch(() => undefined);
      const after = ourResources();
      for (const [kind, n] of Object.entries(after)) expect(n, kind).toBeLessThanOrEqual(before[kind] ?? 0);
      expect(['exit', 'SIGINT'].map((e) => process.listenerCount(e))).toEqual(hooks);
    });
  },
);

describe.skipIf(noBluetooth?.startsWith('BLE stacks') === true)('loading the stacks', () => {
  it("leaves bleno's process-wide management socket unbound (no reader thread where AF_BLUETOOTH exists)", async () => {
    const { UartSocket } = await loadBleno();
    const require = createRequire(createRequire(import.meta.url).resolve('@abandonware/bleno'));
    const mgmt = require('./lib/hci-socket/mgmt.js') as { _socket: unknown };
    // The UART driver's socket does nothing until bound (bindControl() only records the mode);
    // the native one would have started a thread that keeps the process alive.
    expect(mgmt._socket).toBeInstanceOf(UartSocket);
    expect(process.env.BLUETOOTH_HCI_SOCKET_FORCE_UART).toBeUndefined();
  });
});
