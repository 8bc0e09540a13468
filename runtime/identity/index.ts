/** Identities, purpose keys, credentials, trust policies and ABAC (Ockam-compatible). */
export {
  type AbacSubject,
  abacAccessControl,
  type BooleanExpr,
  booleanToExpression,
  type Environment,
  type Expr,
  evaluateExpression,
  formatExpression,
  MAX_POLICY_DEPTH,
  MAX_POLICY_LENGTH,
  POLICY_OPERATORS,
  Policy,
  PolicyError,
  parseBooleanExpression,
  parseExpression,
  parsePolicy,
  SUBJECT_HAS_CREDENTIAL,
  SUBJECT_IDENTIFIER,
  subjectEnvironment,
} from './abac.js';
export { CborWriter } from './cbor-writer.js';
export * from './clock.js';
export * from './credentials.js';
export {
  CHANGE_HASH_LENGTH,
  IDENTIFIER_LENGTH,
  IDENTIFIER_PREFIX,
  Identifier,
} from './identifier.js';
export * from './identity.js';
export * from './models.js';
export {
  type AttestOptions,
  attestCredentialSigningKey,
  attestPurposeKey,
  attestSecureChannelKey,
  type VerifyPurposeKeyOptions,
  verifyPurposeKeyAttestation,
  verifySecureChannelKey,
} from './purpose-keys.js';
export * from './trust.js';
