/**
 * `npm run bench -- enrollment` (issue 11): how fast one authority enrolls devices, and how long a
 * revoked credential keeps working.
 *
 * - X3DH: --devices (default 10,000) sealed requests, prepared beforehand (each device its own
 *   identity, a one-time code, and a one-time prekey from one publication), processed by one
 *   Authority with its durable bookkeeping (the journal fdatasync'd before each answer, group
 *   committed; used one-time prekeys removed from the sealed prekey file at the end). Compared in
 *   the same run with the bare crypto of one enrollment, done as many times: the authority's four
 *   X25519 (3 without a one-time prekey), HKDF for SK and for the session keys, AES-GCM open and
 *   seal, verifying the device's change history and its proof (Ed25519), and signing the
 *   credential (Ed25519).
 * - One-time code: the same number of members enrolled with a code each (Authority.enrollWithCode,
 *   durable), against the credential signature alone; and, end to end over TCP (Noise XX channel
 *   per device, then the request), --e2e-devices (default 500).
 * - Revocation to refusal: a service node (KeyhopNode, in this process) fetching the authority's
 *   list from an enrollment directory every --interval-ms (default 1000); for --revocations
 *   (default 10) devices in turn, the time from `revokeIdentity` to the device's channel closing.
 * The directory for durable files is under the repository (not /tmp, which may be RAM).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { OckamChannelIdentity } from '../runtime/channel/ockam-identity.js';
import { SecureChannels } from '../runtime/channel/secure-channels.js';
import { Authority } from '../runtime/enrollment/authority.js';
import { authorityWorker, enrollWithCode } from '../runtime/enrollment/authority-service.js';
import { AUTHORITY_ADDRESS, DIRECTORY_ADDRESS } from '../runtime/enrollment/client.js';
import type { OneTimePrekey } from '../runtime/enrollment/codec.js';
import { prepareEnrollment } from '../runtime/enrollment/device.js';
import { Directory, directoryWorker } from '../runtime/enrollment/directory.js';
import { DirectoryClient, publishAt } from '../runtime/enrollment/directory-client.js';
import { X3DH_INFO } from '../runtime/enrollment/protocol.js';
import { systemClock } from '../runtime/identity/clock.js';
import { createCredentialIssuer, issueCredential } from '../runtime/identity/credentials.js';
import { createIdentity, type LocalIdentity } from '../runtime/identity/identity.js';
import { parseNodeConfig } from '../runtime/node/config.js';
import { KeyhopNode } from '../runtime/node/node.js';
import { Router } from '../runtime/routing/router.js';
import { TcpTransport } from '../runtime/transports/tcp/tcp-transport.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../vaults/software/software-vault.js';
import { type BenchFlags, type Benchmark, intFlag, packageRoot } from './harness.js';
import { round } from './support.js';

const verifier = new SoftwareVerifier();
const TARGET_PER_SEC = 1000;

async function identity(vault = SoftwareVault.inMemory()): Promise<LocalIdentity> {
  return createIdentity({ vault, verifier, clock: systemClock });
}

async function inBatches<T>(
  items: readonly T[],
  size: number,
  fn: (t: T) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

async function newAuthority(dir: string, name: string) {
  const local = await identity();
  const issuer = await createCredentialIssuer(local, { verifier, clock: systemClock });
  const authority = await Authority.create({ home: dir, name, local, issuer, verifier, prekeys: 0 });
  return { authority, local, issuer };
}

/**
 * The bare crypto of one X3DH enrollment at the authority, `n` times, with the same concurrency
 * and the same thread-pool offload the authority uses (so that the ratio is the cost of
 * everything else): four X25519, HKDF for SK and for the session keys, AES-GCM open, two
 * signature verifications (the device's change and its proof), the credential's signature and
 * its check, AES-GCM seal. Returns per second.
 */
async function bareX3dh(n: number, device: LocalIdentity): Promise<number> {
  const p = nodeCrypto;
  const keys = Array.from({ length: 5 }, () => p.dhGenerate('25519'));
  const { privateKey: signer, publicKey: signerPublic } = p.signingGenerate('Ed25519');
  const digest = new Uint8Array(createHash('sha256').update('proof').digest());
  const proof = await device.vault.sign(device.keyId, digest);
  const deviceKey = device.identity.primaryPublicKey.bytes;
  const key = new Uint8Array(32);
  const nonce = new Uint8Array(12);
  const body = randomBytes(600);
  const sealed = p.aeadEncrypt('AESGCM', key, nonce, new Uint8Array(64), body);
  const info = new TextEncoder().encode(X3DH_INFO);
  const one = async () => {
    const dh = [
      p.dh('25519', keys[0]!.privateKey, keys[1]!.publicKey),
      p.dh('25519', keys[2]!.privateKey, keys[3]!.publicKey),
      p.dh('25519', keys[0]!.privateKey, keys[4]!.publicKey),
      p.dh('25519', keys[2]!.privateKey, keys[4]!.publicKey),
    ];
    const ikm = new Uint8Array(32 + 128);
    ikm.fill(0xff, 0, 32);
    for (const [j, d] of dh.entries()) ikm.set(d, 32 + 32 * j);
    const sk = p.hkdfSha256(new Uint8Array(32), ikm, info, 32);
    p.hkdfSha256(new Uint8Array(32), sk, info, 64);
    p.aeadDecrypt('AESGCM', key, nonce, new Uint8Array(64), sealed);
    await Promise.all([
      p.verifyAsync!('Ed25519', deviceKey, digest, proof),
      p.verifyAsync!('Ed25519', deviceKey, digest, proof),
    ]);
    const signature = await p.signAsync!('Ed25519', signer, digest);
    await p.verifyAsync!('Ed25519', signerPublic, digest, signature);
    p.aeadEncrypt('AESGCM', key, nonce, new Uint8Array(32), body);
  };
  const start = performance.now();
  await inBatches(
    Array.from({ length: n }, (_, i) => i),
    256,
    one,
  );
  return n / ((performance.now() - start) / 1000);
}

/** The bare crypto of one one-time-code enrollment: the credential's signature and its check. */
async function bareCredential(n: number): Promise<number> {
  const p = nodeCrypto;
  const { privateKey: signer, publicKey: signerPublic } = p.signingGenerate('Ed25519');
  const digest = randomBytes(32);
  const one = async () => {
    const signature = await p.signAsync!('Ed25519', signer, digest);
    await p.verifyAsync!('Ed25519', signerPublic, digest, signature);
  };
  const start = performance.now();
  await inBatches(
    Array.from({ length: n }, (_, i) => i),
    256,
    one,
  );
  return n / ((performance.now() - start) / 1000);
}

async function x3dhThroughput(dir: string, devices: number, log: (s: string) => void) {
  const { authority } = await newAuthority(dir, 'x3dh');
  try {
    log(`  preparing ${devices} devices (identity, code, sealed request)…`);
    const tickets: Uint8Array[] = [];
    await inBatches(
      Array.from({ length: devices }, (_, i) => i),
      1000,
      async () => {
        tickets.push(
          (await authority.createTicket({ attributes: { role: 'sensor' }, route: 'x' })).ticket.code,
        );
      },
    );
    const publication = await authority.publication(devices);
    const prekeys = [...publication.prekeys] as OneTimePrekey[];
    const requests: Uint8Array[] = [];
    let sample: { device: LocalIdentity; history: Uint8Array } | undefined;
    const vault = SoftwareVault.inMemory();
    for (let i = 0; i < devices; i++) {
      const device = await identity(vault);
      sample ??= { device, history: device.identity.export() };
      const { request } = await prepareEnrollment({
        local: device,
        anchor: authority.identity,
        fetched: {
          authority: authority.identity.export(),
          bundle: publication.bundle,
          prekey: prekeys[i] ?? null,
        },
        token: tickets[i]!,
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      });
      requests.push(request);
    }
    log('  processing…');
    const start = performance.now();
    let answered = 0;
    await inBatches(requests, 256, async (r) => {
      if ((await authority.processRequest(r)) !== undefined) answered++;
    });
    await authority.flushPrekeys();
    const seconds = (performance.now() - start) / 1000;
    if (authority.counters.enrolled !== devices)
      throw new Error(
        `only ${authority.counters.enrolled} of ${devices} enrolled: ${JSON.stringify(authority.counters)}`,
      );
    return { perSec: devices / seconds, seconds, answered, sample: sample! };
  } finally {
    await authority.close();
  }
}

async function codeThroughput(dir: string, devices: number) {
  const { authority } = await newAuthority(dir, 'codes');
  try {
    const codes: Uint8Array[] = [];
    await inBatches(
      Array.from({ length: devices }, (_, i) => i),
      1000,
      async () => {
        codes.push(
          (await authority.createTicket({ attributes: { role: 'sensor' }, route: 'x' })).ticket.code,
        );
      },
    );
    // Members are identified by the channel; here by identifiers made up front.
    const ids = Array.from({ length: devices }, () => `I${randomBytes(32).toString('hex')}`);
    const start = performance.now();
    await inBatches(
      ids.map((id, i) => ({ id, code: codes[i]! })),
      256,
      ({ id, code }) => authority.enrollWithCode(id, 1, code),
    );
    const seconds = (performance.now() - start) / 1000;
    return { perSec: devices / seconds, seconds };
  } finally {
    await authority.close();
  }
}

/** One-time-code enrollment end to end: per device a Noise XX channel over TCP, then the request. */
async function codeEndToEnd(dir: string, devices: number, concurrency: number) {
  const { authority, local } = await newAuthority(dir, 'e2e');
  const server = new Router({ name: 'authority' });
  const client = new Router({ name: 'devices' });
  try {
    const tcp = TcpTransport.create(server);
    TcpTransport.create(client);
    const channelIdentity = await OckamChannelIdentity.create({
      local,
      secureChannelVault: SoftwareVault.inMemory(),
      verifier,
      clock: systemClock,
    });
    const channels = new SecureChannels(server, { identity: channelIdentity });
    await server.startWorker(AUTHORITY_ADDRESS, authorityWorker(authority));
    await channels.createListener('api', { expose: [AUTHORITY_ADDRESS] });
    const listener = await tcp.listen('127.0.0.1:0', { expose: ['api'] });
    const route = `1#${listener.address} => api`;
    const vault = SoftwareVault.inMemory();
    const prepared = [];
    for (let i = 0; i < devices; i++) {
      const device = await identity(vault);
      const code = (await authority.createTicket({ attributes: { role: 'sensor' }, route })).ticket.code;
      const ci = await OckamChannelIdentity.create({
        local: device,
        secureChannelVault: SoftwareVault.inMemory(),
        verifier,
        clock: systemClock,
      });
      prepared.push({ device, code, channels: new SecureChannels(client, { identity: ci }) });
    }
    const start = performance.now();
    await inBatches(prepared, concurrency, (p) =>
      enrollWithCode(
        {
          channels: p.channels,
          router: client,
          authority: authority.identity,
          route,
          subject: p.device.identity.identifier.toString(),
          verifier,
          clock: systemClock,
        },
        p.code,
      ),
    );
    const seconds = (performance.now() - start) / 1000;
    return { perSec: devices / seconds, seconds };
  } finally {
    await client.shutdown();
    await server.shutdown();
    await authority.close();
  }
}

/** Revocation to refusal at a service node that polls a directory every `intervalMs`. */
async function revocationWindow(dir: string, rounds: number, intervalMs: number) {
  const { authority, local, issuer } = await newAuthority(dir, 'revoker');
  const hub = new Router({ name: 'hub' });
  const devices = new Router({ name: 'devices' });
  let service: KeyhopNode | undefined;
  try {
    const hubTcp = TcpTransport.create(hub);
    TcpTransport.create(devices);
    const directory = await Directory.open(join(dir, 'directory'), { verifier });
    await hub.startWorker(DIRECTORY_ADDRESS, directoryWorker(directory));
    const hubListener = await hubTcp.listen('127.0.0.1:0', { expose: [DIRECTORY_ADDRESS] });
    const hubRoute = `1#${hubListener.address}`;
    const publisher = new DirectoryClient(hub, hubRoute);
    await publishAt(publisher, authority, 0);
    service = await KeyhopNode.start(
      parseNodeConfig({
        name: 'service',
        identity: null,
        tcpListeners: ['127.0.0.1:0'],
        secureChannel: {
          authorities: [Buffer.from(authority.identity.export()).toString('hex')],
          policy: '(= subject.role "sensor")',
          revocationsFrom: `${hubRoute} => ${DIRECTORY_ADDRESS}`,
          revocationIntervalSeconds: Math.max(1, Math.round(intervalMs / 1000)),
        },
      }),
    );
    const serviceRoute = `1#${service.tcp.listenerList()[0]!.address} => api`;
    void local;
    const windows: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const device = await identity();
      const credential = await issueCredential(issuer, {
        subject: device.identity.identifier,
        attributes: { role: 'sensor' },
        verifier,
        clock: systemClock,
      });
      const ci = await OckamChannelIdentity.create({
        local: device,
        secureChannelVault: SoftwareVault.inMemory(),
        verifier,
        clock: systemClock,
        credentials: [credential],
      });
      const channel = await new SecureChannels(devices, { identity: ci }).create(serviceRoute);
      const closed = new Promise<number>((resolve) => channel.onClose(() => resolve(performance.now())));
      // Start at a random point of the service's polling cycle, as a real revocation would.
      await new Promise((r) => setTimeout(r, Math.random() * intervalMs));
      const start = performance.now();
      await authority.revokeIdentity(device.identity.identifier.toString());
      await publisher.putRevocations(authority.identity.export(), (await authority.revocations()).bytes);
      windows.push((await closed) - start);
    }
    windows.sort((a, b) => a - b);
    return {
      intervalMs: Math.max(1, Math.round(intervalMs / 1000)) * 1000,
      medianMs: windows[Math.floor(windows.length / 2)]!,
      maxMs: windows[windows.length - 1]!,
      minMs: windows[0]!,
      rounds,
    };
  } finally {
    await service?.stop();
    await devices.shutdown();
    await hub.shutdown();
    await authority.close();
  }
}

export const enrollmentBenchmark: Benchmark = {
  description:
    'enrollments per second of one authority (X3DH, one-time code) against their bare crypto; revocation to refusal',
  async run(flags: BenchFlags) {
    const devices = intFlag(flags, 'devices', 10_000);
    const e2eDevices = intFlag(flags, 'e2e-devices', 500);
    const rounds = intFlag(flags, 'revocations', 10);
    const intervalMs = intFlag(flags, 'interval-ms', 1000);
    const dir = mkdtempSync(join(packageRoot(), 'bench', '.enrollment-'));
    const log = (s: string) => process.stdout.write(`${s}\n`);
    try {
      log(`X3DH, ${devices} devices`);
      const x3dh = await x3dhThroughput(dir, devices, log);
      const bareX = await bareX3dh(devices, x3dh.sample.device);
      log(`one-time codes, ${devices} devices`);
      const codes = await codeThroughput(dir, devices);
      const bareC = await bareCredential(devices);
      log(`one-time codes end to end over TCP, ${e2eDevices} devices`);
      const e2e = await codeEndToEnd(dir, e2eDevices, 32);
      log(`revocation to refusal, ${rounds} rounds`);
      const window = await revocationWindow(dir, rounds, intervalMs);
      const results = {
        x3dh: {
          devices,
          perSec: round(x3dh.perSec, 0),
          seconds: round(x3dh.seconds, 2),
          bareCryptoPerSec: round(bareX, 0),
          ratioToBareCrypto: round(x3dh.perSec / bareX, 2),
        },
        oneTimeCode: {
          devices,
          perSec: round(codes.perSec, 0),
          seconds: round(codes.seconds, 2),
          bareCryptoPerSec: round(bareC, 0),
          ratioToBareCrypto: round(codes.perSec / bareC, 2),
        },
        oneTimeCodeEndToEnd: {
          devices: e2eDevices,
          concurrency: 32,
          perSec: round(e2e.perSec, 0),
          seconds: round(e2e.seconds, 2),
        },
        revocationToRefusal: {
          pollIntervalMs: window.intervalMs,
          rounds: window.rounds,
          minMs: round(window.minMs, 0),
          medianMs: round(window.medianMs, 0),
          maxMs: round(window.maxMs, 0),
        },
      };
      return {
        parameters: {
          devices,
          e2eDevices,
          revocations: rounds,
          intervalMs,
          durable: 'journal fdatasync (group commit) on ext4',
        },
        results,
        summary: {
          target: { enrollmentsPerSec: TARGET_PER_SEC },
          met: results.x3dh.perSec >= TARGET_PER_SEC && results.oneTimeCode.perSec >= TARGET_PER_SEC,
        },
        table: {
          columns: ['measure', 'keyhop', 'bare crypto', 'ratio'],
          rows: [
            [
              `X3DH enrollments/s (${devices})`,
              results.x3dh.perSec,
              results.x3dh.bareCryptoPerSec,
              results.x3dh.ratioToBareCrypto,
            ],
            [
              `one-time-code enrollments/s (${devices})`,
              results.oneTimeCode.perSec,
              results.oneTimeCode.bareCryptoPerSec,
              results.oneTimeCode.ratioToBareCrypto,
            ],
            [
              `one-time code over TCP + Noise XX/s (${e2eDevices})`,
              results.oneTimeCodeEndToEnd.perSec,
              '-',
              '-',
            ],
            [
              `revocation to refusal ms (poll ${window.intervalMs} ms): min/median/max`,
              `${results.revocationToRefusal.minMs}/${results.revocationToRefusal.medianMs}/${results.revocationToRefusal.maxMs}`,
              '-',
              '-',
            ],
          ],
        },
        notes: [
          `target ≥ ${TARGET_PER_SEC} enrollments/s: ${results.x3dh.perSec >= TARGET_PER_SEC && results.oneTimeCode.perSec >= TARGET_PER_SEC ? 'met' : 'NOT met'}`,
          'the revocation window is the poll interval plus one fetch and one pass over the open channels',
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
