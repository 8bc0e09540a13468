import { beforeAll, describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/bytes.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { ErrorCodes } from '../errors.js';
import { parsePolicy } from './abac.js';
import { fixedClock } from './clock.js';
import {
  createCredentialIssuer,
  issueCredential,
  type VerifiedCredential,
  verifyCredential,
} from './credentials.js';
import { Identifier } from './identifier.js';
import { createIdentity, type LocalIdentity } from './identity.js';
import {
  type AuthenticatedPeer,
  checkTrust,
  peerSubject,
  trustAll,
  trustAny,
  trustCredential,
  trustEveryone,
  trustIdentifiers,
} from './trust.js';

const verifier = new SoftwareVerifier();

const T0 = 1_700_000_000;
const clock = fixedClock(T0);
const A = `I${'aa'.repeat(32)}`;
const B = `I${'bb'.repeat(32)}`;

describe('identifier policies', () => {
  it('trustEveryone, trustIdentifiers and the combinators', () => {
    const a: AuthenticatedPeer = { identifier: A };
    const b: AuthenticatedPeer = { identifier: Identifier.parse(B) };
    const onlyA = trustIdentifiers([A.toUpperCase().replace(/^I/, 'I')]);
    expect(trustEveryone(a)).toBe(true);
    expect(onlyA(a)).toBe(true);
    expect(onlyA(b)).toBe(false);
    expect(onlyA({ identifier: 'garbage' })).toBe(false);
    expect(trustIdentifiers([A, Identifier.parse(B)])(b)).toBe(true);
    expect(trustIdentifiers([])(a)).toBe(false);
    expect(trustAll(trustEveryone, onlyA)(a)).toBe(true);
    expect(trustAll(trustEveryone, onlyA)(b)).toBe(false);
    expect(trustAll()(b)).toBe(true);
    expect(trustAny(onlyA, trustIdentifiers([B]))(b)).toBe(true);
    expect(trustAny(onlyA)(b)).toBe(false);
    expect(trustAny()(b)).toBe(false);
    expect(codeOf(() => trustIdentifiers(['Pnope']))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('checkTrust throws TRUST_REFUSED', () => {
    expect(() => checkTrust(trustEveryone, { identifier: A })).not.toThrow();
    expect(codeOf(() => checkTrust(trustIdentifiers([B]), { identifier: A }))).toBe(ErrorCodes.TRUST_REFUSED);
    const throwing = () => {
      throw new Error('boom');
    };
    expect(codeOf(() => checkTrust(throwing, { identifier: A }))).toBe(ErrorCodes.TRUST_REFUSED);
  });
});

describe('credential policies', () => {
  const vault = SoftwareVault.inMemory();
  let authority: LocalIdentity;
  let otherAuthority: LocalIdentity;
  let peer: LocalIdentity;
  let admin: VerifiedCredential;
  let fromOther: VerifiedCredential;

  beforeAll(async () => {
    authority = await createIdentity({ vault, verifier, clock });
    otherAuthority = await createIdentity({ vault, verifier, clock });
    peer = await createIdentity({ vault, verifier, clock });
    const issue = async (a: LocalIdentity, attributes: Record<string, string>) => {
      const issuer = await createCredentialIssuer(a, { verifier, clock });
      const cpk = await issueCredential(issuer, {
        subject: peer.identity.identifier,
        attributes,
        ttlSeconds: 100,
        verifier,
        clock,
      });
      return verifyCredential(cpk, { authorities: [a.identity], verifier, clock });
    };
    admin = await issue(authority, { role: 'admin', site: 'lab' });
    fromOther = await issue(otherAuthority, { role: 'guest' });
  });

  it('require a credential from a listed authority', () => {
    const p = { identifier: peer.identity.identifier, credentials: [admin] };
    expect(trustCredential({ authorities: [authority.identity] })(p)).toBe(true);
    expect(trustCredential({ authorities: [authority.identity.identifier.toString()] })(p)).toBe(true);
    expect(trustCredential({ authorities: [otherAuthority.identity] })(p)).toBe(false);
    expect(
      trustCredential({ authorities: [authority.identity] })({ identifier: peer.identity.identifier }),
    ).toBe(false);
    const upper = `I${peer.identity.identifier.toString().slice(1).toUpperCase()}`;
    expect(
      trustCredential({ authorities: [authority.identity] })({ identifier: upper, credentials: [admin] }),
    ).toBe(true);
    // A credential about someone else does not count.
    expect(
      trustCredential({ authorities: [authority.identity] })({ identifier: A, credentials: [admin] }),
    ).toBe(false);
  });

  it('evaluate the ABAC policy over the attributes', () => {
    const p = { identifier: peer.identity.identifier, credentials: [fromOther, admin] };
    const authorities = [authority.identity];
    expect(trustCredential({ authorities, policy: '(= subject.role "admin")' })(p)).toBe(true);
    expect(trustCredential({ authorities, policy: parsePolicy('(= subject.site "home")') })(p)).toBe(false);
    expect(
      trustCredential({ authorities: [otherAuthority.identity], policy: '(= subject.role "admin")' })(p),
    ).toBe(false);
    expect(
      trustCredential({ authorities, policy: `(= subject.identifier "${peer.identity.identifier}")` })(p),
    ).toBe(true);
    expect(codeOf(() => trustCredential({ authorities, policy: '(= subject.role' }))).toBe(
      ErrorCodes.POLICY_INVALID,
    );
  });

  it('skip credentials that expired since they were verified', () => {
    const p = { identifier: peer.identity.identifier, credentials: [admin] };
    const policy = trustCredential({ authorities: [authority.identity], clock: fixedClock(T0 + 101) });
    expect(policy(p)).toBe(false);
    expect(trustCredential({ authorities: [authority.identity], clock: fixedClock(T0 + 100) })(p)).toBe(true);
  });

  it('peerSubject merges attributes of trusted credentials only', () => {
    const p = { identifier: peer.identity.identifier, credentials: [fromOther, admin] };
    const both = peerSubject(p, [authority.identity, otherAuthority.identity]);
    expect(both.attributes).toEqual(
      new Map([
        ['role', 'admin'],
        ['site', 'lab'],
      ]),
    );
    const one = peerSubject(p, [otherAuthority.identity]);
    expect(one.attributes).toEqual(new Map([['role', 'guest']]));
    expect(peerSubject(p, []).attributes).toBeUndefined();
    expect(peerSubject(p, []).identifier).toBe(peer.identity.identifier.toString());
  });
});
