// Two nodes with fresh Ockam identities and a secure channel between them over TCP. The server's
// "control" worker accepts only messages from peers whose credential, issued by a trusted
// authority, says role=operator.
// Run: npm install && node examples/secure-channel.mjs
import {
  channelPolicy,
  createCredentialIssuer,
  createIdentity,
  issueCredential,
  KeyhopNode,
  Route,
  SECURE_CHANNEL_INFO,
  SoftwareVault,
  SoftwareVerifier,
  systemClock,
} from 'keyhop';

const text = new TextEncoder();
const verifier = new SoftwareVerifier();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// An authority that vouches for attributes of other identities.
const authority = await createIdentity({ vault: SoftwareVault.inMemory(), verifier, clock: systemClock });
const issuer = await createCredentialIssuer(authority, { verifier, clock: systemClock });

const node = (name, extra) =>
  KeyhopNode.start({
    name,
    tcpListeners: [],
    services: { echo: false, relay: false },
    relays: [],
    identity: null, // a fresh identity in memory; `keyhop identity create` makes lasting ones
    outlets: [],
    inlets: [],
    log: { level: 'silent' },
    ...extra,
  });

const server = await node('server', {
  tcpListeners: [{ address: '127.0.0.1:0' }],
  secureChannel: {
    listener: true,
    address: 'api',
    // Trusted authorities, as change histories (hex).
    authorities: [Buffer.from(authority.identity.export()).toString('hex')],
  },
});
let handled = 0;
/** Messages the control worker took, plus those its policy refused: what the server has decided. */
const decided = () => handled + server.router.metrics.dropped.incoming_denied;
const control = await server.router.startWorker(
  'control',
  {
    handleMessage: (_ctx, m) => {
      handled++;
      const { peer } = m.info(SECURE_CHANNEL_INFO);
      console.log(
        `server: "${new TextDecoder().decode(m.payload)}" from ${peer.identifier}, ${JSON.stringify(peer.attributes)}`,
      );
    },
  },
  { incoming: channelPolicy('(= subject.role "operator")') },
);
server.channels.listeners()[0].expose(control.address);
const listener = `1#${server.tcp.listenerList()[0].address} => api`;

for (const [name, role] of [
  ['guest', undefined],
  ['operator', 'operator'],
]) {
  const client = await node(name, { secureChannel: { listener: false, address: 'api', authorities: [] } });
  if (role) {
    const credential = await issueCredential(issuer, {
      subject: client.identity.identity.identifier,
      attributes: { role },
      verifier,
      clock: systemClock,
    });
    client.channels.identity.setCredentials([credential]);
  }
  const channel = await client.channels.create(listener);
  console.log(`${name}: secure channel open to ${channel.peer.identifier}`);
  const app = await client.router.context();
  const before = decided();
  const handledBefore = handled;
  await app.send(Route.of(channel.encryptor, 'control'), text.encode(`hello from the ${name}`));
  // Wait for the server's decision (delivered or refused), not for a guessed time.
  while (decided() === before) await sleep(5);
  console.log(
    `${name}: ${handled > handledBefore ? 'message accepted' : 'message refused by the control worker (no role=operator credential)'}`,
  );
  console.log(`         server refused so far: ${server.router.metrics.dropped.incoming_denied}`);
  await client.stop();
}
await server.stop();
