import { describe, expect, it } from 'vitest';
import { until } from '../../../test/support/wait.js';
import { decodeBareString, encodeBareString } from '../../codec/bare.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { RelayService } from './relay-service.js';
import { createRemoteRelay } from './remote-relay.js';

const enc = new TextEncoder();

describe('RelayService (in one router)', () => {
  it('registers a random relay, answers with its name and forwards by prepending the stored route', async () => {
    const router = new Router();
    const service = await RelayService.start(router);
    const client = await router.context('client');
    await client.send(Route.of('forwarding_service'), encodeBareString('register'));
    const answer = await client.receive(1000);
    const name = decodeBareString(answer.payload);
    expect(name).toMatch(/^forward_to_[0-9a-f]{32}$/);
    expect([...service.relays.keys()]).toEqual([name]);
    // The relay forgot the client's own address: its stored route is now empty, so a message to
    // [relay, target] goes straight to "target".
    const got: Route[] = [];
    await router.startWorker('target', { handleMessage: (_c, m) => void got.push(m.returnRoute) });
    const sender = await router.context('sender');
    await sender.send(Route.of(name, 'target'), enc.encode('x'));
    await until(() => got.length === 1);
    expect(got.map((r) => r.toString())).toEqual(['0#sender']);
  });

  it('gives a static alias its own name and replaces an earlier registration of it', async () => {
    const router = new Router();
    const service = await RelayService.start(router);
    // The route to "this node" is empty: createRemoteRelay appends the service address itself.
    const first = await createRemoteRelay(router, Route.EMPTY, { alias: 'dev1' });
    expect(first.name).toBe('forward_to_dev1');
    const second = await createRemoteRelay(router, Route.EMPTY, { alias: 'dev1' });
    expect(second.name).toBe('forward_to_dev1');
    expect(service.relays.size).toBe(1);
  });

  it('refuses bad aliases and unauthorized registrations (no relay created)', async () => {
    const router = new Router();
    const service = await RelayService.start(router, { authorize: ({ alias }) => alias !== 'blocked' });
    const c = await router.context();
    await c.send(Route.of('static_forwarding_service'), encodeBareString('../etc'));
    await c.send(Route.of('static_forwarding_service'), encodeBareString('blocked'));
    await c.send(Route.of('static_forwarding_service'), enc.encode('\xff not bare'));
    await until(() => router.metrics.workerErrors === 3); // all three handled, each refused
    expect(service.relays.size).toBe(0);
    await expect(
      createRemoteRelay(router, Route.EMPTY, { alias: 'blocked', timeoutMs: 100 }),
    ).rejects.toMatchObject({
      code: 'RELAY_REJECTED',
    });
  });

  it('enforces the relay limit', async () => {
    const router = new Router();
    const service = await RelayService.start(router, { maxRelays: 2 });
    await createRemoteRelay(router, Route.EMPTY, { alias: 'a' });
    await createRemoteRelay(router, Route.EMPTY, { alias: 'b' });
    await expect(
      createRemoteRelay(router, Route.EMPTY, { alias: 'c', timeoutMs: 100 }),
    ).rejects.toMatchObject({
      code: 'RELAY_REJECTED',
    });
    expect(service.relays.size).toBe(2);
  });
});
