import { afterEach, describe, expect, it } from 'vitest';
import { channelPolicy } from '../../runtime/channel/access.js';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../../runtime/channel/channel-identity.js';
import { systemClock } from '../../runtime/identity/clock.js';
import { createCredentialIssuer, issueCredential } from '../../runtime/identity/credentials.js';
import { trustCredential, trustIdentifiers } from '../../runtime/identity/trust.js';
import type { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import type { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import { RelayService } from '../../runtime/services/relay/relay-service.js';
import { createRemoteRelay } from '../../runtime/services/relay/remote-relay.js';
import { nobleCrypto } from '../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { testNode } from '../support/nodes.js';
import { until } from '../support/wait.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe.each([
  ['node', nodeCrypto],
  ['noble', nobleCrypto],
] as const)('Ockam secure channels with real identities (%s provider)', (_name, provider) => {
  const routers: Router[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.shutdown();
  });

  it('authenticates both ends through a relay, with credentials and attribute-based access', async () => {
    // An authority issues "role=device, fleet=f1" to the device.
    const authority = await testNode('authority', { provider });
    const issuer = await createCredentialIssuer(authority.local, {
      verifier: authority.verifier,
      clock: systemClock,
    });
    routers.push(authority.router);

    const device0 = await testNode('device-probe', { provider, keyType: 'P256' });
    routers.push(device0.router);
    const credential = await issueCredential(issuer, {
      subject: device0.local.identity.identifier,
      attributes: { role: 'device', fleet: 'f1' },
      verifier: authority.verifier,
      clock: systemClock,
    });
    // The device, a P-256 identity (as a secure element would hold), presents the credential.
    const device = await testNode('device', { provider, local: device0.local, credentials: [credential] });
    routers.push(device.router);

    // The relay node only routes.
    const relay = await testNode('relay', { provider });
    routers.push(relay.router);
    await RelayService.start(relay.router);
    const relayListener = await relay.tcp.listen('127.0.0.1:0', { expose: ['static_forwarding_service'] });

    // The server sits behind the relay; its listener only accepts holders of a device credential.
    const server = await testNode('server', { provider, authorities: [authority.local.identity] });
    routers.push(server.router);
    const inbox: Message[] = [];
    await server.router.startWorker(
      'telemetry',
      { handleMessage: (_c, m) => void inbox.push(m) },
      {
        incoming: channelPolicy('(and (= subject.role "device") (= subject.fleet "f1"))'),
      },
    );
    await server.router.startWorker('echo', new EchoService());
    await server.channels.createListener('api', {
      trustPolicy: trustCredential({
        authorities: [authority.local.identity],
        policy: '(= subject.role "device")',
      }),
      expose: ['telemetry', 'echo'],
    });
    await server.tcp.connect(relayListener.address, { expose: ['api'] });
    const relayed = await createRemoteRelay(server.router, `1#${relayListener.address}`, { alias: 'server' });

    const channel = await device.channels.create(relayed.route.append('api'), {
      trustPolicy: trustIdentifiers([server.local.identity.identifier]),
    });
    expect(channel.peer?.identifier).toBe(server.local.identity.identifier.toString());

    const ctx = await device.router.context();
    await ctx.send(Route.of(channel.encryptor, 'telemetry'), enc.encode('temp=21.5'));
    await until(() => inbox.length === 1);
    const info = inbox[0]!.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!;
    expect(info.peer.identifier).toBe(device.local.identity.identifier.toString());
    expect(info.peer.attributes).toEqual({ role: 'device', fleet: 'f1' });

    await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode('round trip'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('round trip');

    // The relay saw only ciphertext: the plaintext never crossed it.
    const seenAtRelay: Uint8Array[] = [];
    relay.router.onTrace((e) => seenAtRelay.push(e.message.payload));
    await ctx.send(Route.of(channel.encryptor, 'telemetry'), enc.encode('secret reading 42'));
    await until(() => inbox.length === 2);
    expect(seenAtRelay.length).toBeGreaterThan(0);
    for (const p of seenAtRelay) expect(Buffer.from(p).includes(Buffer.from('secret reading'))).toBe(false);
  });

  it('refuses a peer without the required credential at the responder', async () => {
    const authority = await testNode('authority', { provider });
    const server = await testNode('server', { provider, authorities: [authority.local.identity] });
    const stranger = await testNode('stranger', { provider });
    routers.push(authority.router, server.router, stranger.router);
    await server.channels.createListener('api', {
      trustPolicy: trustCredential({ authorities: [authority.local.identity] }),
    });
    const listener = await server.tcp.listen('127.0.0.1:0', { expose: ['api'] });
    await expect(stranger.channels.create(`1#${listener.address} => api`)).rejects.toMatchObject({
      code: 'TRUST_REFUSED',
    });
    expect(server.channels.list()).toHaveLength(0);
    expect(stranger.channels.list()).toHaveLength(0);
  });

  it('pushes refreshed credentials in-channel', async () => {
    const authority = await testNode('authority', { provider });
    const issuer = await createCredentialIssuer(authority.local, {
      verifier: authority.verifier,
      clock: systemClock,
    });
    const device = await testNode('device', { provider });
    const server = await testNode('server', { provider, authorities: [authority.local.identity] });
    routers.push(authority.router, device.router, server.router);
    const inbox: Message[] = [];
    await server.router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
    await server.channels.createListener('api', { expose: ['inbox'] });
    const listener = await server.tcp.listen('127.0.0.1:0', { expose: ['api'] });
    const channel = await device.channels.create(`1#${listener.address} => api`);
    const ctx = await device.router.context();
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('before'));
    await until(() => inbox.length === 1);
    expect(inbox[0]!.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!.peer.attributes).toEqual({});

    device.channelIdentity.setCredentials([
      await issueCredential(issuer, {
        subject: device.local.identity.identifier,
        attributes: { role: 'sensor' },
        verifier: authority.verifier,
        clock: systemClock,
      }),
    ]);
    await channel.refreshCredentials();
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('after'));
    await until(() => inbox.length === 2);
    expect(inbox[1]!.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!.peer.attributes).toEqual({
      role: 'sensor',
    });
  });
});
