import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Route } from '../../runtime/routing/route.js';
import { TcpInlet } from '../../runtime/services/portal/inlet.js';
import { TcpOutlet } from '../../runtime/services/portal/outlet.js';
import { type TestNode, testNode } from '../support/nodes.js';
import { until } from '../support/wait.js';

/**
 * A peer killed without a word (its connection destroyed, no Close, no Disconnect): what it held
 * on the other side ends with the connection, not never (the soak benchmark found both leaks).
 */
describe('channels and portals end with the connection under them', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function pair(): Promise<{ a: TestNode; b: TestNode; route: string }> {
    const b = await testNode('b');
    cleanups.push(() => b.router.shutdown());
    await b.channels.createListener('api', { expose: ['outlet'] });
    const listener = await b.tcp.listen('127.0.0.1:0', { expose: ['api'] });
    const a = await testNode('a');
    cleanups.push(() => a.router.shutdown());
    await a.tcp.connect(listener.address);
    return { a, b, route: `1#${listener.address} => api` };
  }

  it('closes both ends of every channel when their TCP connection is cut, and counts it', async () => {
    const { a, b, route } = await pair();
    for (let i = 0; i < 5; i++) await a.channels.create(route);
    await until(() => b.channels.list().filter((e) => e.state === 'open').length === 5, 20_000);
    // The cut: the client's socket destroyed, nothing queued leaves.
    for (const c of a.tcp.connections()) c.close('killed');
    await until(() => b.channels.list().length === 0 && a.channels.list().length === 0, 20_000);
    expect(b.channels.stats().closedWithTransport).toBe(5);
    expect(a.channels.stats().closedWithTransport).toBe(5);
  });

  it('closes the outlet side of a portal (its target socket too) when the channel it came through ends with its connection', async () => {
    const { a, b, route } = await pair();
    const targetSockets = new Set<Socket>();
    const closedAtTarget: Socket[] = [];
    const target: Server = createServer((s) => {
      targetSockets.add(s);
      // Read what arrives: a paused socket would never see the end of the stream.
      s.resume();
      s.on('close', () => closedAtTarget.push(s));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of targetSockets) s.destroy();
          target.close(() => r());
        }),
    );
    const port = (target.address() as { port: number }).port;
    const outlet = await TcpOutlet.create(b.router, { target: `127.0.0.1:${port}` });
    const channel = await a.channels.create(route);
    const inlet = await TcpInlet.create(a.router, {
      bind: '127.0.0.1:0',
      outletRoute: Route.of(channel.encryptor, 'outlet'),
    });
    cleanups.push(() => inlet.close());
    const { createConnection } = await import('node:net');
    const client = createConnection({ host: '127.0.0.1', port: Number(inlet.address.split(':').pop()) });
    client.on('error', () => undefined);
    cleanups.push(() => void client.destroy());
    client.write('hello');
    await until(() => outlet.connections().length === 1 && targetSockets.size === 1, 20_000);

    for (const c of a.tcp.connections()) c.close('killed');
    await until(() => outlet.connections().length === 0 && closedAtTarget.length === 1, 20_000);
    expect(outlet.stats.closedWithTransport).toBe(1);
  });
});
