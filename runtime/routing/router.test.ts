import { describe, expect, it } from 'vitest';
import { sleep, until } from '../../test/support/wait.js';
import { isKeyhopError } from '../errors.js';
import { allowFrom, denyAll, flowControlled } from './access-control.js';
import { Address } from './address.js';
import type { Context } from './context.js';
import { Message } from './message.js';
import { Route } from './route.js';
import { Router } from './router.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A worker that applies the hop rule and forwards. */
const hop = {
  handleMessage: (ctx: Context, m: Message) => ctx.forward(m.stepForward(ctx.address)),
};

describe('Router', () => {
  it('applies the hop rule along a local multi-hop route and answers back', async () => {
    const router = new Router();
    await router.startWorker('h1', hop);
    await router.startWorker('h2', hop);
    await router.startWorker('echo', { handleMessage: (ctx, m) => ctx.reply(m, m.payload) });
    const app = await router.context('app');
    await app.send(Route.of('h1', 'h2', 'echo'), enc.encode('x'));
    const reply = await app.receive(1000);
    expect(dec.decode(reply.payload)).toBe('x');
    // echo answered along [h2, h1, app]; each hop pushed itself again on the way back.
    expect(reply.returnRoute.toString()).toBe('0#h1 => 0#h2 => 0#echo');
  });

  it('rejects a send to an unknown local address with ADDRESS_UNKNOWN', async () => {
    const router = new Router();
    const app = await router.context();
    const e = await app.send(Route.of('missing'), new Uint8Array()).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'ADDRESS_UNKNOWN')).toBe(true);
    expect(router.metrics.dropped.unknown_address).toBe(1);
  });

  it('rejects a non-local address without a transport with TRANSPORT_UNKNOWN', async () => {
    const router = new Router();
    const app = await router.context();
    const e = await app.send(Route.parse('9#somewhere'), new Uint8Array()).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'TRANSPORT_UNKNOWN')).toBe(true);
  });

  it('refuses duplicate and non-local worker addresses', async () => {
    const router = new Router();
    await router.startWorker('w', hop);
    await expect(router.startWorker('w', hop)).rejects.toMatchObject({ code: 'ADDRESS_IN_USE' });
    await expect(router.startWorker('1#127.0.0.1:1', hop)).rejects.toMatchObject({ code: 'ADDRESS_INVALID' });
  });

  it('delivers to every address of a multi-address worker', async () => {
    const router = new Router();
    const seen: string[] = [];
    await router.startWorker(['a', 'b'], { handleMessage: (_c, m) => void seen.push(m.onward.next!.text) });
    const app = await router.context();
    await app.send(Route.of('a'), new Uint8Array());
    await app.send(Route.of('b'), new Uint8Array());
    await until(() => seen.length === 2);
    expect(seen).toEqual(['a', 'b']);
  });

  it('handles one message at a time, in order, even when handlers are slow', async () => {
    const router = new Router();
    const log: string[] = [];
    let active = 0;
    await router.startWorker('slow', {
      handleMessage: async (_c, m) => {
        active++;
        expect(active).toBe(1);
        await new Promise((r) => setTimeout(r, 2));
        log.push(dec.decode(m.payload));
        active--;
      },
    });
    const app = await router.context();
    for (let i = 0; i < 20; i++) await app.send(Route.of('slow'), enc.encode(String(i)));
    await until(() => log.length === 20);
    expect(log).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });

  it('drops and counts messages refused by incoming and outgoing access control', async () => {
    const router = new Router();
    const got: string[] = [];
    await router.startWorker(
      'guarded',
      { handleMessage: (_c, m) => void got.push(dec.decode(m.payload)) },
      {
        incoming: allowFrom(Address.local('friend')),
      },
    );
    const friend = await router.context('friend');
    const stranger = await router.context('stranger');
    const mute = await router.context('mute', { outgoing: denyAll });
    await stranger.send(Route.of('guarded'), enc.encode('stranger'));
    await mute.send(Route.of('guarded'), enc.encode('mute'));
    await friend.send(Route.of('guarded'), enc.encode('friend'));
    await until(() => got.length === 1);
    expect(got).toEqual(['friend']);
    expect(router.metrics.dropped.incoming_denied).toBe(1);
    expect(router.metrics.dropped.outgoing_denied).toBe(1);
  });

  it('lets a flow-controlled sender reach only consumers of its flow (or of the parent flow)', async () => {
    const router = new Router();
    const fc = router.flowControls;
    const listenerFlow = fc.create();
    const connFlow = fc.create(listenerFlow);
    const got: string[] = [];
    const sink = (name: string) => ({ handleMessage: () => void got.push(name) });
    await router.startWorker('exposed', sink('exposed'));
    await router.startWorker('direct', sink('direct'));
    await router.startWorker('hidden', sink('hidden'));
    fc.addConsumer(listenerFlow, Address.local('exposed'));
    fc.addConsumer(connFlow, Address.local('direct'));
    const receiver = await router.context('receiver', { outgoing: flowControlled(fc, connFlow) });
    for (const to of ['exposed', 'direct', 'hidden']) await receiver.send(Route.of(to), new Uint8Array());
    await until(() => got.length === 2 && router.metrics.dropped.outgoing_denied === 1);
    expect(got.sort()).toEqual(['direct', 'exposed']);
    fc.remove(connFlow);
    await receiver.send(Route.of('direct'), new Uint8Array());
    await until(() => router.metrics.dropped.outgoing_denied === 2);
    expect(got).toHaveLength(2);
  });

  it('counts a failing handler and keeps the worker running', async () => {
    const router = new Router();
    let n = 0;
    await router.startWorker('flaky', {
      handleMessage: () => {
        n++;
        if (n === 1) throw new Error('boom');
      },
    });
    const app = await router.context();
    await app.send(Route.of('flaky'), new Uint8Array());
    await app.send(Route.of('flaky'), new Uint8Array());
    await until(() => n === 2);
    expect(router.metrics.workerErrors).toBe(1);
  });

  it('refuses to send along an empty route from a context', async () => {
    const router = new Router();
    const app = await router.context();
    await expect(app.send(Route.EMPTY, new Uint8Array())).rejects.toMatchObject({ code: 'ROUTE_EMPTY' });
  });

  it('times out receive() with TIMEOUT', async () => {
    const router = new Router();
    const app = await router.context();
    await expect(app.receive(20)).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('stops workers on shutdown and refuses new ones', async () => {
    const router = new Router();
    let stopped = false;
    await router.startWorker('w', {
      handleMessage: () => undefined,
      shutdown: () => {
        stopped = true;
      },
    });
    await router.shutdown();
    expect(stopped).toBe(true);
    expect(router.workers()).toEqual([]);
    await expect(router.startWorker('x', hop)).rejects.toMatchObject({ code: 'ROUTER_STOPPED' });
  });

  it('traces deliveries without letting a throwing tracer break them', async () => {
    const router = new Router({ name: 'n' });
    const events: string[] = [];
    router.onTrace((e) => events.push(`${e.node}:${e.from.text}->${e.to.text}`));
    router.onTrace(() => {
      throw new Error('bad tracer');
    });
    await router.startWorker('echo', { handleMessage: (ctx, m) => ctx.reply(m, m.payload) });
    const app = await router.context('app');
    await app.send(Route.of('echo'), enc.encode('x'));
    await app.receive(1000);
    expect(events).toEqual(['n:app->echo', 'n:echo->app']);
  });

  it('calls done exactly once whether a message is handled, refused or undeliverable', async () => {
    const router = new Router();
    await router.startWorker('ok', { handleMessage: () => undefined });
    await router.startWorker('closed', { handleMessage: () => undefined }, { incoming: denyAll });
    await router.context('from');
    const from = Address.local('from');
    const counts = [0, 0, 0, 0];
    for (const [i, to] of ['ok', 'closed', 'missing', '9#nowhere'].entries()) {
      await router
        .send(from, Message.create(Route.of(to), new Uint8Array()), () => counts[i]!++)
        .catch(() => undefined);
    }
    await until(() => counts.every((n) => n > 0));
    await sleep(5); // room for a second call, which must not come
    expect(counts).toEqual([1, 1, 1, 1]);
  });
});
