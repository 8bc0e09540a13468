/**
 * Time for identities, purpose keys and credentials: UTC seconds since the Unix epoch. Boards
 * without a real-time clock must set one (NTP, GPS, a gateway) before they can verify anything;
 * pass a Clock in so tests and such boards control it.
 */
export interface Clock {
  /** Current UTC time in whole seconds. */
  now(): number;
}

export const systemClock: Clock = {
  now: () => Math.floor(Date.now() / 1000),
};

/** A clock stuck at `seconds`: tests, and replaying recorded data. */
export function fixedClock(seconds: number): Clock {
  return { now: () => seconds };
}

/**
 * Accepted clock skew between two nodes. Something created up to this many seconds in the future
 * of the verifier's clock is accepted; an expiry time gets no grace (as in Ockam).
 */
export const CLOCK_TOLERANCE_SECONDS = 60;

const DAY = 24 * 60 * 60;
/** Validity of a primary key (Change), Ockam's default: 10 × 365 days. */
export const DEFAULT_IDENTITY_TTL_SECONDS = 3650 * DAY;
/** Validity of a purpose key attestation, Ockam's default: 5 × 365 days. */
export const DEFAULT_PURPOSE_KEY_TTL_SECONDS = 1825 * DAY;
/** Validity of a credential when the issuer does not say (keyhop's default): 30 days. */
export const DEFAULT_CREDENTIAL_TTL_SECONDS = 30 * DAY;

/** Largest timestamp keyhop handles: CBOR u64 limited to what a JS number holds exactly. */
export const MAX_TIMESTAMP = Number.MAX_SAFE_INTEGER;
