/**
 * A minimal X.509 v3 certificate builder (DER), enough for the TLS baselines of the benchmarks:
 * a P-256 CA and P-256 leaf certificates signed with ECDSA-SHA256. node:crypto creates keys and
 * parses certificates but cannot issue them, and there is no openssl CLI to rely on.
 */
import {
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';

// --- DER ---------------------------------------------------------------------------------------

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>>= 8) bytes.unshift(v & 0xff);
  return Buffer.of(0x80 | bytes.length, ...bytes);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.of(tag), derLength(body.length), body]);
}

const sequence = (...items: Buffer[]) => tlv(0x30, ...items);
const set = (...items: Buffer[]) => tlv(0x31, ...items);
/** Context-specific, constructed ([n] EXPLICIT). */
const explicit = (n: number, ...items: Buffer[]) => tlv(0xa0 | n, ...items);
const octetString = (b: Buffer) => tlv(0x04, b);
const bitString = (b: Buffer) => tlv(0x03, Buffer.of(0), b);
const utf8String = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const boolean = (v: boolean) => tlv(0x01, Buffer.of(v ? 0xff : 0x00));

/** A non-negative INTEGER from big-endian magnitude bytes (minimal, with a 00 when the top bit is set). */
function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return tlv(0x02, (m[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), m]) : m);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2), 'ascii'))
    : tlv(0x18, Buffer.from(digits, 'ascii'));
}

// --- X.509 -------------------------------------------------------------------------------------

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
const OID_COMMON_NAME = '2.5.4.3';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_SUBJECT_KEY_ID = '2.5.29.14';
const OID_AUTHORITY_KEY_ID = '2.5.29.35';

const name = (cn: string) => sequence(set(sequence(oid(OID_COMMON_NAME), utf8String(cn))));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** Key identifiers (RFC 5280 §4.2.1.2): any unique value is allowed; a random one is used. */
const keyIdentifier = () => randomBytes(20);

export interface IssuedCertificate {
  /** PEM, for tls.createServer / tls.connect. */
  certPem: string;
  keyPem: string;
  der: Buffer;
  key: KeyObject;
  x509: X509Certificate;
}

interface IssueOptions {
  subject: string;
  issuer: string;
  subjectKey: KeyObject;
  signingKey: KeyObject;
  ca: boolean;
  subjectKeyId: Buffer;
  authorityKeyId: Buffer;
  /** DNS names and IPv4 addresses for subjectAltName (leaf certificates). */
  altNames?: { dns?: string[]; ipv4?: string[] };
  validDays: number;
}

function issue(o: IssueOptions): Buffer {
  const now = Date.now();
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const spki = createPublicKey(o.subjectKey).export({ format: 'der', type: 'spki' });
  const extensions: Buffer[] = [
    // basicConstraints: CA:TRUE for the CA, empty (CA:FALSE) for leaves.
    extension(OID_BASIC_CONSTRAINTS, true, o.ca ? sequence(boolean(true)) : sequence()),
    // keyUsage: keyCertSign | cRLSign (bits 5, 6) for the CA, digitalSignature (bit 0) for leaves.
    extension(OID_KEY_USAGE, true, o.ca ? bitStringBits(0x06, 1) : bitStringBits(0x80, 7)),
    extension(OID_SUBJECT_KEY_ID, false, octetString(o.subjectKeyId)),
    extension(OID_AUTHORITY_KEY_ID, false, sequence(tlv(0x80, o.authorityKeyId))),
  ];
  if (o.altNames) {
    const names = [
      ...(o.altNames.dns ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))),
      ...(o.altNames.ipv4 ?? []).map((ip) => tlv(0x87, Buffer.from(ip.split('.').map(Number)))),
    ];
    extensions.push(extension(OID_SUBJECT_ALT_NAME, false, sequence(...names)));
  }
  const tbs = sequence(
    explicit(0, tlv(0x02, Buffer.of(2))), // v3
    unsignedInteger(serial),
    ECDSA_WITH_SHA256,
    name(o.issuer),
    sequence(time(new Date(now - 3600_000)), time(new Date(now + o.validDays * 86400_000))),
    name(o.subject),
    spki,
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, o.signingKey); // DER ECDSA-Sig-Value
  return sequence(tbs, ECDSA_WITH_SHA256, bitString(signature));
}

/** A BIT STRING of one byte with `unused` trailing bits (keyUsage). */
function bitStringBits(byte: number, unused: number): Buffer {
  return tlv(0x03, Buffer.of(unused, byte));
}

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

function finish(der: Buffer, key: KeyObject): IssuedCertificate {
  return {
    certPem: toPem(der),
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
    der,
    key,
    x509: new X509Certificate(der),
  };
}

export interface TlsCredentials {
  ca: IssuedCertificate;
  server: IssuedCertificate;
  client: IssuedCertificate;
}

const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

/**
 * A self-signed P-256 CA, a server certificate for `localhost` / 127.0.0.1 and a client
 * certificate, all ECDSA-SHA256. Each is checked with node:crypto's X509Certificate before use.
 */
export function createTlsCredentials(validDays = 2): TlsCredentials {
  const caKey = p256();
  const caKeyId = keyIdentifier();
  const ca = finish(
    issue({
      subject: 'keyhop bench CA',
      issuer: 'keyhop bench CA',
      subjectKey: caKey,
      signingKey: caKey,
      ca: true,
      subjectKeyId: caKeyId,
      authorityKeyId: caKeyId,
      validDays,
    }),
    caKey,
  );
  const leaf = (cn: string, altNames?: IssueOptions['altNames']) => {
    const key = p256();
    return finish(
      issue({
        subject: cn,
        issuer: 'keyhop bench CA',
        subjectKey: key,
        signingKey: caKey,
        ca: false,
        subjectKeyId: keyIdentifier(),
        authorityKeyId: caKeyId,
        validDays,
        ...(altNames ? { altNames } : {}),
      }),
      key,
    );
  };
  const server = leaf('localhost', { dns: ['localhost'], ipv4: ['127.0.0.1'] });
  const client = leaf('keyhop bench client');
  for (const c of [ca, server, client]) {
    if (!c.x509.verify(ca.x509.publicKey)) throw new Error(`certificate ${c.x509.subject} does not verify`);
    if (!c.x509.checkIssued(ca.x509)) throw new Error(`certificate ${c.x509.subject} not issued by the CA`);
  }
  if (!ca.x509.ca || server.x509.ca || client.x509.ca) throw new Error('basicConstraints not as intended');
  if (server.x509.checkIP('127.0.0.1') !== '127.0.0.1') throw new Error('server certificate lacks 127.0.0.1');
  return { ca, server, client };
}
