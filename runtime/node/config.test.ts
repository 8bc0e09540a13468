import { describe, expect, it } from 'vitest';
import { bleController, parseNodeConfig } from './config.js';

/** The outlet node's identifier an inlet expects. */
const GW = `I${'ab'.repeat(32)}`;

describe('parseNodeConfig', () => {
  it('fills defaults', () => {
    expect(parseNodeConfig({ name: 'n1' })).toEqual({
      name: 'n1',
      tcpListeners: [],
      services: { echo: true, relay: false },
      relays: [],
      secureChannel: { listener: true, address: 'api', authorities: [] },
      outlets: [],
      inlets: [],
      log: { level: 'info' },
    });
  });

  it('reads identity, secure channel, outlets and inlets', () => {
    const c = parseNodeConfig({
      name: 'gw',
      identity: 'gateway',
      secureChannel: { expose: ['outlet'], policy: '(= subject.role "device")', authorities: ['ca'] },
      outlets: [{ target: '127.0.0.1:8080', policy: 'role_admin' }],
      inlets: [{ bind: '127.0.0.1:9000', to: '1#hub:4000 => forward_to_gw => api', authorized: [GW] }],
    });
    expect(c.identity).toBe('gateway');
    expect(c.secureChannel).toEqual({
      listener: true,
      address: 'api',
      expose: ['outlet'],
      policy: '(= subject.role "device")',
      authorities: ['ca'],
    });
    expect(c.outlets).toEqual([{ target: '127.0.0.1:8080', policy: 'role_admin' }]);
    expect(c.inlets).toEqual([
      { bind: '127.0.0.1:9000', to: '1#hub:4000 => forward_to_gw => api', authorized: [GW] },
    ]);
    expect(() => parseNodeConfig({ name: 'n', outlets: [{ address: 'x' }] })).toThrow(/needs a "target"/);
    expect(() => parseNodeConfig({ name: 'n', secureChannel: { listner: true } })).toThrow(
      /unknown setting "listner"/,
    );
  });

  it('accepts the full form and the short listener form', () => {
    const c = parseNodeConfig({
      name: 'gw',
      tcpListeners: ['127.0.0.1:4000', { address: '0.0.0.0:5000', expose: ['echo'] }],
      services: { echo: false, relay: true },
      relays: [{ at: '1#hub:4000', alias: 'gw', expose: ['echo'] }],
      log: { level: 'debug' },
    });
    expect(c.tcpListeners).toEqual([
      { address: '127.0.0.1:4000' },
      { address: '0.0.0.0:5000', expose: ['echo'] },
    ]);
    expect(c.relays).toEqual([{ at: '1#hub:4000', alias: 'gw', expose: ['echo'] }]);
  });

  it.each([
    [[], /JSON object/],
    [{ name: 'bad name' }, /node name/],
    [{ name: 'n', tcpListener: [] }, /unknown setting "tcpListener"/],
    [{ name: 'n', tcpListeners: [{ port: 1 }] }, /tcpListeners\[0\] needs an "address"/],
    [{ name: 'n', services: { echo: 'yes' } }, /services.echo must be true or false/],
    [{ name: 'n', relays: [{ at: '1#h:1', alias: 'a b' }] }, /alias/],
    [{ name: 'n', relays: [{}] }, /relays\[0\] needs "at"/],
    [{ name: 'n', log: { level: 'loud' } }, /log.level/],
    [{ name: 'n', tcpListeners: [{ address: 'h:1', expose: [1] }] }, /expose must be a list/],
  ])('rejects %j with CONFIG_INVALID', (raw, message) => {
    expect(() => parseNodeConfig(raw)).toThrow(message);
    try {
      parseNodeConfig(raw);
    } catch (e) {
      expect((e as { code: string }).code).toBe('CONFIG_INVALID');
    }
  });

  it('takes ble.hci as a kernel adapter (hciN) or the path of an HCI UART', () => {
    const kernel = parseNodeConfig({ name: 'gw', ble: { hci: 'hci0', role: 'central' } }).ble!;
    expect(kernel).toEqual({ hci: 'hci0', role: 'central' });
    expect(bleController(kernel)).toEqual({ hciDevice: 0 });
    expect(
      bleController(parseNodeConfig({ name: 'd', ble: { hci: 'hci12', role: 'peripheral' } }).ble!),
    ).toEqual({
      hciDevice: 12,
    });
    const uart = parseNodeConfig({
      name: 'd',
      ble: { hci: '/dev/ttyACM0', baudRate: 115200, role: 'peripheral', maxMtu: 23 },
    }).ble!;
    expect(bleController(uart)).toEqual({ uartPath: '/dev/ttyACM0', baudRate: 115200 });
    expect(bleController({ hci: './hci-pty', role: 'central' })).toEqual({ uartPath: './hci-pty' });
  });

  it.each([
    [
      { role: 'central' },
      /ble.hci must be a kernel Bluetooth adapter \(hci0, hci1, ...\) or the path of an HCI UART/,
    ],
    [{ hci: '', role: 'central' }, /ble.hci must be/],
    [{ hci: 'ttyACM0', role: 'central' }, /ble.hci must be .*got "ttyACM0"/],
    [{ hci: 'hci', role: 'central' }, /ble.hci must be/],
    [{ hci: 'hci01', role: 'central' }, /ble.hci must be/],
    [{ hci: 'hci65535', role: 'central' }, /ble.hci must be/],
    [{ hci: 0, role: 'central' }, /ble.hci must be/],
    [
      { hci: 'hci0', role: 'central', baudRate: 115200 },
      /ble.baudRate is for an HCI UART, not for the kernel adapter hci0/,
    ],
    [{ hci: 'hci0', role: 'gateway' }, /ble.role/],
  ])('rejects ble %j with CONFIG_INVALID', (ble, message) => {
    expect(() => parseNodeConfig({ name: 'n', ble })).toThrow(message);
    try {
      parseNodeConfig({ name: 'n', ble });
    } catch (e) {
      expect((e as { code: string }).code).toBe('CONFIG_INVALID');
    }
  });

  it('reads MQTT mailboxes (url or urls) and the embedded broker', () => {
    const c = parseNodeConfig({
      name: 'n',
      mqttBroker: { bind: '127.0.0.1:1883' },
      mqtt: [
        { url: 'mqtt://127.0.0.1:1883' },
        {
          urls: ['mqtts://a:8883', 'mqtts://b:8883'],
          mailbox: 'gw-1',
          broker: 'fleet',
          username: 'gw-1',
          passwordFile: '/etc/keyhop/mqtt-password',
          tls: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
          protocolVersion: 4,
          expose: ['api'],
          durable: false,
          outbox: { maxMessages: 10, maxAgeSeconds: 0, window: 5 },
        },
      ],
    });
    expect(c.mqttBroker).toEqual({ bind: '127.0.0.1:1883' });
    expect(c.mqtt![0]).toEqual({ urls: ['mqtt://127.0.0.1:1883'] });
    expect(c.mqtt![1]).toMatchObject({
      urls: ['mqtts://a:8883', 'mqtts://b:8883'],
      protocolVersion: 4,
      durable: false,
    });
  });

  it.each([
    [{}, /mqtt\[0\] needs a "url"/],
    [{ url: 'mqtt://x:1', password: 'p' }, /unknown setting "password"/],
    [{ url: 'mqtt://x:1', protocolVersion: 3 }, /protocolVersion must be 4/],
    [{ url: 'mqtt://x:1', tls: { cert: 'c.pem' } }, /needs both "cert" and "key"/],
    [{ url: 'mqtt://x:1', outbox: { window: 0 } }, /outbox.window must be a whole number >= 1/],
    [{ url: 'mqtt://x:1', durable: 'yes' }, /durable must be true or false/],
  ])('rejects mqtt %j with CONFIG_INVALID', (mqtt, message) => {
    expect(() => parseNodeConfig({ name: 'n', mqtt: [mqtt] })).toThrow(message);
  });

  it('takes a receive window for queue mode, within 32..65536', () => {
    expect(
      parseNodeConfig({ name: 'n', secureChannel: { receiveWindow: 1024 } }).secureChannel?.receiveWindow,
    ).toBe(1024);
    for (const bad of [16, 65_537, 1.5, '64']) {
      expect(() => parseNodeConfig({ name: 'n', secureChannel: { receiveWindow: bad } })).toThrow(
        /receiveWindow/,
      );
    }
  });
});
