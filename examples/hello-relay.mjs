// A node behind NAT made reachable through a relay, then a client that talks to it.
// Run: npm install && node examples/hello-relay.mjs
import { createRemoteRelay, EchoService, RelayService, Router, TcpTransport } from 'keyhop';

const text = new TextEncoder();

// The public node: runs the relay service and listens on a port.
const hub = new Router({ name: 'hub' });
const hubTcp = TcpTransport.create(hub);
await RelayService.start(hub);
const listener = await hubTcp.listen('127.0.0.1:0', {
  expose: ['forwarding_service', 'static_forwarding_service'],
});

// The device: opens no port. It dials the hub, exposes its echo service on that connection and
// registers a relay named "device".
const device = new Router({ name: 'device' });
const deviceTcp = TcpTransport.create(device);
await device.startWorker('echo', new EchoService());
await deviceTcp.connect(listener.address, { expose: ['echo'] });
const relay = await createRemoteRelay(device, `1#${listener.address}`, { alias: 'device' });
console.log(`device reachable as ${relay.route}`);

// A client anywhere that can reach the hub.
const client = new Router({ name: 'client' });
TcpTransport.create(client);
const ctx = await client.context();
await ctx.send(relay.route.append('echo'), text.encode('hello through the relay'));
const reply = await ctx.receive(5000);
console.log(`client got: ${new TextDecoder().decode(reply.payload)}`);

for (const r of [client, device, hub]) await r.shutdown();
