import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { KeyhopNode } from '../../runtime/node/node.js';
import { memoryNodeConfig } from '../support/node-config.js';

const config = memoryNodeConfig;

describe('portal inside a secure channel, through a relay', () => {
  const nodes: KeyhopNode[] = [];
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    for (const n of nodes.splice(0).reverse()) await n.stop();
  });

  it('downloads 64 MiB through inlet -> channel -> relay -> outlet and the SHA-256 matches', async () => {
    const blob = randomBytes(64 * 1024 * 1024);
    const expected = createHash('sha256').update(blob).digest('hex');
    const web = createServer((_req, res) => {
      res.setHeader('content-length', blob.length);
      res.end(blob);
    });
    servers.push(web);
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const target = `127.0.0.1:${(web.address() as AddressInfo).port}`;

    const relay = await KeyhopNode.start(
      config('relay', { tcpListeners: [{ address: '127.0.0.1:0' }], services: { echo: false, relay: true } }),
    );
    nodes.push(relay);
    const relayAddress = relay.tcp.listenerList()[0]!.address;
    const server = await KeyhopNode.start(
      config('server', {
        outlets: [{ target }],
        relays: [{ at: `1#${relayAddress}`, alias: 'server' }],
      }),
    );
    nodes.push(server);
    const client = await KeyhopNode.start(config('client'));
    nodes.push(client);
    const inlet = await client.createInlet({
      bind: '127.0.0.1:0',
      to: `1#${relayAddress} => forward_to_server => api`,
      authorized: [server.identity.identity.identifier.toString()],
    });
    expect(inlet.channel).toMatch(/^0#sc_encryptor_/);

    const started = Date.now();
    const res = await fetch(`http://${inlet.address}/`);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    expect(bytes).toBe(blob.length);
    expect(hash.digest('hex')).toBe(expected);
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `64 MiB through the secure portal in ${seconds.toFixed(2)} s (${(64 / seconds).toFixed(1)} MiB/s)`,
    );

    // The relay carried the bytes without being able to read them: no plaintext chunk in its view.
    const sample = blob.subarray(1_000_000, 1_000_064);
    const seen: Uint8Array[] = [];
    relay.router.onTrace((e) => seen.push(e.message.payload));
    const again = await fetch(`http://${inlet.address}/`);
    await again.arrayBuffer();
    expect(seen.length).toBeGreaterThan(100);
    expect(seen.some((p) => Buffer.from(p).includes(sample))).toBe(false);
  }, 120_000);
});
