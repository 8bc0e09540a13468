import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../channel/channel-identity.js';
import { KeyhopNode } from '../node/node.js';
import type { Address } from '../routing/address.js';
import type { Context } from '../routing/context.js';
import type { Message } from '../routing/message.js';
import { Route } from '../routing/route.js';
import type { TraceEvent } from '../routing/router.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Inbox {
  ctx: Context;
  next(): Promise<Message>;
}

async function startInbox(node: KeyhopNode): Promise<Inbox> {
  const queue: Message[] = [];
  const waiters: ((m: Message) => void)[] = [];
  const ctx = await node.router.startWorker('inbox', {
    handleMessage: (_c, m) => {
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    },
  });
  return {
    ctx,
    next: () => {
      const m = queue.shift();
      return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

function config(name: string, relay: boolean) {
  return {
    name,
    tcpListeners: relay ? [{ address: '127.0.0.1:0' }] : [],
    services: { echo: true, relay },
    relays: [],
    log: { level: 'silent' },
  };
}

/**
 * `keyhop demo`: a relay node and two nodes behind it (alice, bob) that open no port of their
 * own, all in this process but talking over real TCP sockets on 127.0.0.1. Messages go both
 * ways through the relay, and every delivery on every node is printed.
 */
export async function runDemo(
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<{
  delivered: number;
  exchanged: string[];
}> {
  const nodes: KeyhopNode[] = [];
  try {
    const relay = await KeyhopNode.start(config('relay', true));
    nodes.push(relay);
    const relayAddr = relay.tcp.listenerList()[0]!.address;
    const alice = await KeyhopNode.start(config('alice', false));
    nodes.push(alice);
    const bob = await KeyhopNode.start(config('bob', false));
    nodes.push(bob);
    const aliceInbox = await startInbox(alice);
    const bobInbox = await startInbox(bob);
    const services = ['echo', 'inbox', 'api'];
    const aliceRelay = await alice.createRelay({ at: `1#${relayAddr}`, alias: 'alice', expose: services });
    const bobRelay = await bob.createRelay({ at: `1#${relayAddr}`, alias: 'bob', expose: services });

    write('keyhop demo: a relay node and two nodes behind it, over real TCP sockets on 127.0.0.1');
    write('');
    write(`  relay  listens on 1#${relayAddr} and runs the relay service`);
    write(`  alice  opens no port: it dialled the relay and registered ${aliceRelay.name}`);
    write(`  bob    opens no port: it dialled the relay and registered ${bobRelay.name}`);

    const label = labeller(relay, { alice, bob });
    let delivered = 0;
    let tracing = true;
    for (const n of nodes) {
      n.router.onTrace((e: TraceEvent) => {
        if (!tracing) return;
        delivered++;
        write(
          `     ${e.node.padEnd(6)} ${label(n, e.from).padEnd(16)} -> ${label(n, e.to).padEnd(16)} ` +
            `${String(e.message.payload.length).padStart(3)} B, onward [${e.message.onward
              .step()
              .addresses.map((a) => label(n, a))
              .join(', ')}]`,
        );
      });
    }
    const exchanged: string[] = [];

    const step = async (
      n: number,
      title: string,
      send: () => Promise<void>,
      inbox: Inbox,
      who: string,
      at: KeyhopNode,
    ): Promise<Message> => {
      write('');
      write(`${n}) ${title}`);
      await send();
      const m = await inbox.next();
      const text = dec.decode(m.payload);
      exchanged.push(text);
      write(`   ${who}'s inbox got "${text}"; it can answer along the return route:`);
      write(`   [${m.returnRoute.addresses.map((a) => label(at, a)).join(', ')}]`);
      return m;
    };

    const aliceApp = await alice.router.context('app');
    const hello = 'hello bob, this is alice';
    const toBob = bobRelay.route.append('inbox');
    const m1 = await step(
      1,
      `alice -> bob through the relay, route ${routeText(toBob)}`,
      () => aliceApp.send(toBob, enc.encode(hello)),
      bobInbox,
      'bob',
      bob,
    );

    write('');
    write('2) bob answers along that return route (no relay lookup: the route is the way back)');
    await bobInbox.ctx.reply(m1, enc.encode('hi alice, bob here'));
    const r1 = await aliceApp.receive(5000);
    exchanged.push(dec.decode(r1.payload));
    write(`   alice got "${dec.decode(r1.payload)}"`);

    const toAlice = aliceRelay.route.append('inbox');
    const bobApp = await bob.router.context('app');
    const m2 = await step(
      3,
      `bob -> alice through alice's relay, route ${routeText(toAlice)}`,
      () => bobApp.send(toAlice, enc.encode('bob calling alice')),
      aliceInbox,
      'alice',
      alice,
    );
    await aliceInbox.ctx.reply(m2, enc.encode('alice here, loud and clear'));
    const r2 = await bobApp.receive(5000);
    exchanged.push(dec.decode(r2.payload));
    write(`   and bob got alice's answer: "${dec.decode(r2.payload)}"`);

    const frames = relay.tcp.connections().reduce((s, c) => s + c.stats.framesIn + c.stats.framesOut, 0);
    write('');
    write(
      `So far: ${delivered} deliveries on 3 nodes, ${frames} TCP frames through the relay node, all in clear text: ` +
        'the relay could read every payload. Now the same path, end to end encrypted.',
    );
    tracing = false;

    // 4) A secure channel from alice to bob, through the relay.
    bob.channels.listeners()[0]!.expose('inbox');
    write('');
    write(`4) alice opens a secure channel to bob's listener "api" through the relay`);
    write(`   alice is ${alice.identity.identity.identifier}`);
    write(`   bob   is ${bob.identity.identity.identifier}`);
    const channel = await alice.channels.create(bobRelay.route.append('api'));
    write(
      `   Noise XX handshake done (Ockam's OCKAM_XX_25519_AES256_GCM_SHA256); alice verified bob's identity:`,
    );
    write(`   ${channel.peer?.identifier}`);
    const atRelay: Uint8Array[] = [];
    const stopRelayTrace = relay.router.onTrace((e) => atRelay.push(e.message.payload));
    const secret = 'the launch code is 0000';
    await aliceApp.send(Route.of(channel.encryptor, 'inbox'), enc.encode(secret));
    const m3 = await bobInbox.next();
    stopRelayTrace();
    const info = m3.info<SecureChannelInfo>(SECURE_CHANNEL_INFO);
    write(
      `   bob's inbox got "${dec.decode(m3.payload)}" from ${info?.peer.identifier} (authenticated by the channel)`,
    );
    const sample = atRelay[0];
    write(
      `   inside the relay node the message made ${atRelay.length} hops, as ciphertext only: ${sample ? `${Buffer.from(sample).subarray(0, 24).toString('hex')}…` : '-'}`,
    );
    const leaked = atRelay.some((p) => Buffer.from(p).includes(Buffer.from(secret)));
    write(`   plaintext visible at the relay: ${leaked ? 'YES (this is a bug)' : 'no'}`);
    exchanged.push(dec.decode(m3.payload));

    // 5) A TCP portal through that channel: an HTTP server on bob's side, reached from alice's side.
    const server = createServer((_req, res) => res.end("hello from bob's web server, through a portal\n"));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      await bob.createOutlet({ target });
      const inlet = await alice.createInlet({
        bind: '127.0.0.1:0',
        to: bobRelay.route.append('api').toString(),
        authorized: [bob.identity.identity.identifier.toString()],
      });
      write('');
      write(
        `5) a TCP portal: bob's outlet -> ${target} (a web server), alice's inlet listens on ${inlet.address}`,
      );
      write(`   the inlet reaches the outlet through a new secure channel, through the relay`);
      const response = await fetch(`http://${inlet.address}/`);
      const body = (await response.text()).trim();
      write(`   GET http://${inlet.address}/ -> ${response.status} "${body}"`);
      exchanged.push(body);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    write('');
    write('Try it by hand: docs/cli.md walks through the same thing with `keyhop node start`.');
    return { delivered, exchanged };
  } finally {
    for (const n of nodes.reverse()) await n.stop();
  }
}

function routeText(r: Route): string {
  return r.addresses.map((a) => a.toString()).join(' => ');
}

/** Names addresses for people: connection workers by the nodes at both ends. */
function labeller(
  relay: KeyhopNode,
  leaves: Record<string, KeyhopNode>,
): (at: KeyhopNode, a: Address) => string {
  const all: [string, KeyhopNode][] = [['relay', relay], ...Object.entries(leaves)];
  const peerOf = (node: KeyhopNode, peer: string): string => {
    if (node !== relay) return 'relay';
    for (const [name, n] of Object.entries(leaves)) {
      if (n.tcp.connections().some((lc) => lc.local === peer)) return name;
    }
    return peer;
  };
  const find = (node: KeyhopNode, a: Address): string | undefined => {
    for (const c of node.tcp.connections()) {
      if (c.sender.equals(a)) return `tcp to ${peerOf(node, c.peer)}`;
      if (c.receiver.equals(a)) return `tcp from ${peerOf(node, c.peer)}`;
    }
    return undefined;
  };
  return (at, a) => {
    const own = find(at, a);
    if (own) return own;
    for (const [name, n] of all) {
      const other = n === at ? undefined : find(n, a);
      if (other) return `${name}'s ${other}`;
    }
    const t = a.isLocal ? a.text : a.toString();
    return t.length > 18 ? `${t.slice(0, 16)}…` : t;
  };
}
