import { afterEach, describe, expect, it } from 'vitest';
import { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import { RelayService } from '../../runtime/services/relay/relay-service.js';
import { createRemoteRelay } from '../../runtime/services/relay/remote-relay.js';
import { TcpTransport } from '../../runtime/transports/tcp/tcp-transport.js';

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

describe('relay over TCP', () => {
  const routers: Router[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.shutdown();
  });

  async function node(name: string) {
    const router = new Router({ name });
    routers.push(router);
    const tcp = TcpTransport.create(router);
    return { router, tcp };
  }

  it('A reaches a service on B through a relay on R, and B answers', async () => {
    const r = await node('relay');
    await RelayService.start(r.router);
    const listener = await r.tcp.listen('127.0.0.1:0', {
      expose: ['forwarding_service', 'static_forwarding_service'],
    });

    const b = await node('b');
    await b.router.startWorker('echo', new EchoService());
    await b.tcp.connect(listener.address, { expose: ['echo'] });
    const relay = await createRemoteRelay(b.router, `1#${listener.address}`, { alias: 'b' });
    expect(relay.name).toBe('forward_to_b');

    const a = await node('a');
    const ctx = await a.router.context();
    await ctx.send(relay.route.append('echo'), bytes('hello'));
    const reply = await ctx.receive(5000);
    expect(text(reply.payload)).toBe('hello');
  });
});
