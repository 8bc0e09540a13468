import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../runtime/node/config.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import { memoryNodeConfig } from '../support/node-config.js';

const config = memoryNodeConfig;

type InletView = { address: string; state: string; channelsOpened: number; trustAnyOutlet: boolean };
const inletsOf = (n: KeyhopNode) => n.describe().inlets as InletView[];
const identifierOf = (n: KeyhopNode) => n.identity.identity.identifier.toString();

/** GET on a new connection (no keep-alive pool: a pooled socket may predate the crash). */
function fetchText(address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`http://${address}/`, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('node inlets: the outlet authenticated by default, the channel made again when its route breaks', () => {
  const nodes: KeyhopNode[] = [];
  const servers: Server[] = [];
  const homes: string[] = [];
  afterEach(async () => {
    for (const n of nodes.splice(0).reverse()) await n.stop();
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
  });

  async function web(body: string): Promise<string> {
    const s = createServer((_req, res) => res.end(body));
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(s.address() as AddressInfo).port}`;
  }

  async function start(
    name: string,
    extra: Record<string, unknown> = {},
    home?: string,
  ): Promise<KeyhopNode> {
    const n = await KeyhopNode.start(config(name, extra) as never, home ? { home } : {});
    nodes.push(n);
    return n;
  }

  it('refuses an inlet that names no identity for the outlet node, unless told to trust any', async () => {
    const inlet = { bind: '127.0.0.1:0', to: '1#127.0.0.1:4000 => api' };
    const parse = (i: Record<string, unknown>) => () => parseNodeConfig({ name: 'n', inlets: [i] });
    expect(parse(inlet)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(parse(inlet)).toThrow(/names no identity for the outlet's node/);
    const id = `I${'0f'.repeat(32)}`;
    expect(parseNodeConfig({ name: 'n', inlets: [{ ...inlet, authorized: [id] }] }).inlets).toEqual([
      { ...inlet, authorized: [id] },
    ]);
    expect(parseNodeConfig({ name: 'n', inlets: [{ ...inlet, trustAnyOutlet: true }] }).inlets).toEqual([
      { ...inlet, trustAnyOutlet: true },
    ]);
    expect(parseNodeConfig({ name: 'n', inlets: [{ ...inlet, secure: false }] }).inlets).toEqual([
      { ...inlet, secure: false },
    ]);
    expect(parse({ ...inlet, authorized: [id], trustAnyOutlet: true })).toThrow(/contradict/);
    expect(parse({ ...inlet, trustAnyOutlet: 'yes' })).toThrow(/trustAnyOutlet must be true or false/);
    expect(parse({ ...inlet, trustAnyOutlet: false })).toThrow(/names no identity/);

    const target = await web('hello');
    const server = await start('server', {
      tcpListeners: [{ address: '127.0.0.1:0' }],
      outlets: [{ target }],
    });
    const to = `1#${server.tcp.listenerList()[0]!.address} => api`;
    const client = await start('client');
    // The API refuses it too, before listening: nothing is left behind.
    await expect(client.createInlet({ bind: '127.0.0.1:0', to })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    expect(inletsOf(client)).toEqual([]);
    // Someone else answering at the route is refused at the handshake.
    await expect(
      client.createInlet({ bind: '127.0.0.1:0', to, authorized: [identifierOf(client)] }),
    ).rejects.toMatchObject({ code: 'TRUST_REFUSED' });
    const named = await client.createInlet({ bind: '127.0.0.1:0', to, authorized: [identifierOf(server)] });
    expect(await fetchText(named.address)).toBe('hello');
    const anyone = await client.createInlet({ bind: '127.0.0.1:0', to, trustAnyOutlet: true });
    expect(await fetchText(anyone.address)).toBe('hello');
    expect(inletsOf(client).map((i) => i.trustAnyOutlet)).toEqual([false, true]);
  });

  it("makes its channel again after the outlet's node crashed, and serves the same port", async () => {
    const home = mkdtempSync(join(tmpdir(), 'kh-portal-'));
    homes.push(home);
    const target = await web('served');
    // The outlet's node: a named identity, so that its replacement is the same identity.
    const first = await start(
      'site',
      { identity: 'default', tcpListeners: [{ address: '127.0.0.1:0' }], outlets: [{ target }] },
      home,
    );
    const siteAddress = first.tcp.listenerList()[0]!.address;
    const client = await start('client');
    const inlet = await client.createInlet({
      bind: '127.0.0.1:0',
      to: `1#${siteAddress} => api`,
      authorized: [identifierOf(first)],
    });
    expect(await fetchText(inlet.address)).toBe('served');
    expect(inletsOf(client)[0]).toMatchObject({ state: 'up', channelsOpened: 1 });

    // A crash: every connection and the listener go, without a Close for any channel.
    for (const c of first.tcp.connections()) c.close('simulated crash');
    for (const l of first.tcp.listenerList()) await l.close();
    // The client's node notices the connection under the inlet's channel is gone.
    await waitFor(() => inletsOf(client)[0]!.state === 'retrying');

    const second = await start(
      'site2',
      { identity: 'default', tcpListeners: [{ address: siteAddress }], outlets: [{ target }] },
      home,
    );
    expect(identifierOf(second)).toBe(identifierOf(first));
    await waitFor(() => {
      const i = inletsOf(client)[0]!;
      return i.state === 'up' && i.channelsOpened === 2;
    });
    // The same inlet, the same port: served by the new node.
    expect(inletsOf(client)[0]!.address).toBe(inlet.address);
    expect(await fetchText(inlet.address)).toBe('served');
  });
});
