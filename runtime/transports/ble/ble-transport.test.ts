import { afterEach, describe, expect, it } from 'vitest';
import { codeOf } from '../../../test/support/bytes.js';
import { MemoryRadio } from '../../../test/support/memory-gatt.js';
import { until } from '../../../test/support/wait.js';
import { describeError, ErrorCodes } from '../../errors.js';
import { Address } from '../../routing/address.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { EchoService } from '../../services/echo.js';
import { BleTransport, parseBleAddress } from './ble-transport.js';
import { KEYHOP_PROFILE, NUS_PROFILE } from './gatt-link.js';

const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.shutdown();
});

async function setup(radio = new MemoryRadio({ mtu: 23 })) {
  const device = new Router();
  const gateway = new Router();
  routers.push(device, gateway);
  const peripheral = radio.peripheral();
  const deviceBle = BleTransport.create(device, { reconnectMinMs: 10 });
  await device.startWorker('echo', new EchoService());
  await deviceBle.listen(peripheral, { name: 'kh-dev', profile: KEYHOP_PROFILE, expose: ['echo'] });
  const gatewayBle = BleTransport.create(gateway, { central: radio.central(), reconnectMinMs: 10 });
  return { device, gateway, peripheral, deviceBle, gatewayBle };
}

describe('BleTransport (in-memory radio)', () => {
  it('parses addresses', () => {
    expect(parseBleAddress('AA:BB:CC:DD:EE:01')).toEqual({
      profile: KEYHOP_PROFILE,
      target: 'aa:bb:cc:dd:ee:01',
    });
    expect(parseBleAddress('nus:Puck.js 1234')).toEqual({ profile: NUS_PROFILE, target: 'Puck.js 1234' });
    expect(codeOf(() => parseBleAddress(''))).toBe(ErrorCodes.ADDRESS_INVALID);
    expect(codeOf(() => parseBleAddress('nus:'))).toBe(ErrorCodes.ADDRESS_INVALID);
  });

  it('routes to an exposed worker by name and by address, with large messages', async () => {
    const { gateway, peripheral, gatewayBle, deviceBle } = await setup();
    const ctx = await gateway.context();
    for (const target of ['kh-dev', peripheral.address]) {
      for (const size of [1, 1000, 64 * 1024]) {
        const body = new Uint8Array(size).fill(size & 0xff);
        await ctx.send(Route.of(Address.parse(`4#${target}`), 'echo'), body);
        const reply = await ctx.receive(5000).catch((e: unknown) => {
          throw new Error(
            `${target} ${size}: ${describeError(e)} ${JSON.stringify([...gatewayBle.peers(), ...deviceBle.peers()].map((p) => p.stats()))}`,
          );
        });
        expect(reply.payload).toEqual(body);
      }
    }
  });

  it('keeps the sender address across a lost link and delivers what was sent meanwhile', async () => {
    const { gateway, gatewayBle, peripheral } = await setup();
    const ctx = await gateway.context();
    const route = Route.of(Address.parse('4#kh-dev'), 'echo');
    await ctx.send(route, Uint8Array.of(1));
    const first = await ctx.receive(5000);
    const [peer] = gatewayBle.peers();
    peripheral.dropLink();
    await until(() => !peer!.isUp);
    for (let i = 0; i < 5; i++) await ctx.send(first.returnRoute, Uint8Array.of(2, i));
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push((await ctx.receive(5000)).payload[1]!);
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(gatewayBle.peers()).toHaveLength(1);
    expect(peer!.stats().links).toBe(2);
  });

  it('does not let a device reach gateway workers it was not given', async () => {
    const { device, gateway, deviceBle } = await setup();
    const secret: Uint8Array[] = [];
    await gateway.startWorker('secret', { handleMessage: (_c, m) => void secret.push(m.payload) });
    const ctx = await gateway.context();
    await ctx.send(Route.of(Address.parse('4#kh-dev'), 'echo'), Uint8Array.of(9));
    await ctx.receive(5000);
    const [incoming] = deviceBle.peers();
    const dctx = await device.context();
    await dctx.send(Route.of(incoming!.sender, 'secret'), Uint8Array.of(1));
    // The dialer's own context may get answers; 'secret' may not.
    await dctx.send(Route.of(incoming!.sender, ctx.address), Uint8Array.of(2));
    expect((await ctx.receive(5000)).payload).toEqual(Uint8Array.of(2));
    expect(secret).toEqual([]);
  });

  it('fails to dial an absent device with CONNECT_FAILED', async () => {
    const { gatewayBle } = await setup();
    await expect(gatewayBle.dial('nobody')).rejects.toMatchObject({ code: ErrorCodes.CONNECT_FAILED });
  });
});
