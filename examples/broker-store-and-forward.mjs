// Store-and-forward through an MQTT broker: a sensor and a collector, each with a mailbox on a
// broker (here the embedded one; a real fleet points both at mosquitto or a cluster), a secure
// channel between them across the broker, and the collector's link down while the sensor goes on
// sending. The readings wait (at the broker and in the sensor's outbox) and arrive in order, once,
// when the collector is back. A client that reads every keyhop topic sees only ciphertext.
// Run: npm install && node examples/broker-store-and-forward.mjs

import { KeyhopNode, Route, startEmbeddedBroker, trustIdentifiers } from 'keyhop';
import mqtt from 'mqtt';

const broker = await startEmbeddedBroker('127.0.0.1:0');
const nodeConfig = (name) => ({
  name,
  tcpListeners: [],
  services: { echo: false, relay: false },
  relays: [],
  identity: null,
  secureChannel: { listener: true, address: 'api', authorities: [], expose: ['readings'] },
  outlets: [],
  inlets: [],
  mqtt: [{ urls: [broker.url], broker: 'fleet' }],
  log: { level: 'silent' },
});

// What the broker sees: a client subscribed to everything under keyhop/.
const spy = await mqtt.connectAsync(broker.url, { clientId: 'spy' });
const seenByBroker = [];
spy.on('message', (_topic, payload) => seenByBroker.push(payload));
await spy.subscribeAsync('keyhop/#', { qos: 1 });

const collector = await KeyhopNode.start(nodeConfig('collector'));
const readings = [];
await collector.router.startWorker('readings', {
  handleMessage: (_ctx, m) => void readings.push(new TextDecoder().decode(m.payload)),
});
const sensor = await KeyhopNode.start(nodeConfig('sensor'));

const channel = await sensor.channels.create(Route.parse('7#fleet/collector => api'), {
  trustPolicy: trustIdentifiers([collector.identity.identity.identifier]),
});
console.log(`sensor: secure channel to 7#fleet/collector open (peer ${channel.peer.identifier})`);
const ctx = await sensor.router.context();
const send = (i) =>
  ctx.send(Route.of(channel.encryptor, 'readings'), new TextEncoder().encode(`reading ${i}`));

for (let i = 0; i < 5; i++) await send(i);
while (readings.length < 5) await new Promise((r) => setTimeout(r, 10));
console.log(`collector: ${readings.length} readings while online`);

// The collector goes offline; its session (and subscription) stay at the broker.
const [mailbox] = collector.mqtt.connections();
await mailbox.disconnect();
for (let i = 5; i < 105; i++) await send(i);
const outbox = () => sensor.mqtt.connections()[0].stats().outbox.messages;
while (outbox() < 100) await new Promise((r) => setTimeout(r, 10));
console.log(
  `sensor: 100 readings sent while the collector is offline, ${outbox()} kept in its outbox until acknowledged`,
);

mailbox.reconnect();
while (readings.length < 105) await new Promise((r) => setTimeout(r, 10));
const inOrder = readings.every((r, i) => r === `reading ${i}`);
console.log(`collector: back online, ${readings.length} readings in all, in order and once: ${inOrder}`);

const plaintext = seenByBroker.filter((p) => p.includes(Buffer.from('reading '))).length;
console.log(`broker: carried ${seenByBroker.length} frames, ${plaintext} with a reading in clear`);

await sensor.stop();
await collector.stop();
await spy.endAsync();
await broker.close();
