/**
 * Nodes configured with a `serial` section: a device node on one end of a cable, a gateway node
 * on the other that lets the device's messages go on over TCP to a server node, and a secure
 * channel from the device to the server through it (serial → gateway → TCP → node).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../runtime/node/config.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import { Route } from '../../runtime/routing/route.js';
import { type SocatPair, socatSkipReason, startSocatPair } from '../rig/socat.js';

const skip = socatSkipReason();

describe.skipIf(skip !== undefined)('nodes with serial links', () => {
  const nodes: KeyhopNode[] = [];
  let pair: SocatPair | undefined;
  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop();
    await pair?.stop();
  });

  it('routes a secure channel from a board over serial through a gateway node to a TCP node', async () => {
    pair = await startSocatPair();
    const server = await KeyhopNode.start(
      parseNodeConfig({ name: 'server', identity: null, tcpListeners: ['127.0.0.1:0'] }),
    );
    nodes.push(server);
    const serverAddress = server.tcp.listenerList()[0]!.address;
    const gateway = await KeyhopNode.start(
      parseNodeConfig({
        name: 'gateway',
        identity: null,
        serial: [{ path: pair.b, baudRate: 921_600, reliable: true, expose: [`1#${serverAddress}`] }],
      }),
    );
    nodes.push(gateway);
    const device = await KeyhopNode.start(
      parseNodeConfig({
        name: 'device',
        identity: null,
        serial: [{ path: pair.a, baudRate: 921_600, reliable: true }],
      }),
    );
    nodes.push(device);
    const channel = await device.createSecureChannel(
      Route.from([`6#${pair.a}@921600`, `1#${serverAddress}`, 'api']),
      [server.identity.identity.identifier.toString()],
    );
    const ctx = await device.router.context();
    for (let i = 0; i < 20; i++) {
      const body = new Uint8Array(1000 + i).fill(i);
      await ctx.send(Route.of(channel.encryptor, 'echo'), body);
      expect((await ctx.receive(5000)).payload).toEqual(body);
    }
    // The gateway only lets the board reach the server: its own services stay closed.
    await ctx.send(Route.from([`6#${pair.a}@921600`, 'echo']), Uint8Array.of(1));
    await expect(ctx.receive(300)).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('rejects bad serial config with CONFIG_INVALID', () => {
    expect(() => parseNodeConfig({ name: 'x', serial: [{ baudRate: 9600 }] })).toThrow(/path/);
    expect(() => parseNodeConfig({ name: 'x', serial: [{ path: '/dev/x', baudRate: -1 }] })).toThrow(
      /baudRate/,
    );
    expect(() => parseNodeConfig({ name: 'x', serial: [{ path: '/dev/x', parity: 'odd' }] })).toThrow(
      /parity/,
    );
  });
});
