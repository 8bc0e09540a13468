import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * Noise handshake patterns (revision 34): the one-way (§7.4), interactive (§7.5) and deferred
 * (§7.6, §18) patterns, the `pskN` modifiers (§9) and the validity rules of §7.3 and §9.3.
 */

export type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss' | 'psk';
export type PreMessageToken = 'e' | 's';

export interface MessagePattern {
  /** True for `->` (initiator to responder), false for `<-`. */
  readonly fromInitiator: boolean;
  readonly tokens: readonly Token[];
}

export interface HandshakePattern {
  /** The pattern part of the protocol name, modifiers included: `XXpsk3`, `NNpsk0+psk2`. */
  readonly name: string;
  /** The pattern without modifiers: `XX`. */
  readonly baseName: string;
  readonly modifiers: readonly string[];
  readonly initiatorPreMessage: readonly PreMessageToken[];
  readonly responderPreMessage: readonly PreMessageToken[];
  readonly messages: readonly MessagePattern[];
  /** N, K and X: a single message, initiator to responder (§7.4). */
  readonly oneWay: boolean;
  /** Number of `psk` tokens; a PSK handshake (§9.2) when > 0. */
  readonly pskCount: number;
}

/** The patterns in the spec's own notation: pre-messages, `...`, then the messages. */
const DEFINITIONS: Readonly<Record<string, readonly string[]>> = {
  // One-way (§7.4)
  N: ['<- s', '...', '-> e, es'],
  K: ['-> s', '<- s', '...', '-> e, es, ss'],
  X: ['<- s', '...', '-> e, es, s, ss'],
  // Interactive, fundamental (§7.5)
  NN: ['-> e', '<- e, ee'],
  NK: ['<- s', '...', '-> e, es', '<- e, ee'],
  NX: ['-> e', '<- e, ee, s, es'],
  KN: ['-> s', '...', '-> e', '<- e, ee, se'],
  KK: ['-> s', '<- s', '...', '-> e, es, ss', '<- e, ee, se'],
  KX: ['-> s', '...', '-> e', '<- e, ee, se, s, es'],
  XN: ['-> e', '<- e, ee', '-> s, se'],
  XK: ['<- s', '...', '-> e, es', '<- e, ee', '-> s, se'],
  XX: ['-> e', '<- e, ee, s, es', '-> s, se'],
  IN: ['-> e, s', '<- e, ee, se'],
  IK: ['<- s', '...', '-> e, es, s, ss', '<- e, ee, se'],
  IX: ['-> e, s', '<- e, ee, se, s, es'],
  // Interactive, deferred (§7.6, §18.2)
  NK1: ['<- s', '...', '-> e', '<- e, ee, es'],
  NX1: ['-> e', '<- e, ee, s', '-> es'],
  X1N: ['-> e', '<- e, ee', '-> s', '<- se'],
  X1K: ['<- s', '...', '-> e, es', '<- e, ee', '-> s', '<- se'],
  XK1: ['<- s', '...', '-> e', '<- e, ee, es', '-> s, se'],
  X1K1: ['<- s', '...', '-> e', '<- e, ee, es', '-> s', '<- se'],
  X1X: ['-> e', '<- e, ee, s, es', '-> s', '<- se'],
  XX1: ['-> e', '<- e, ee, s', '-> es, s, se'],
  X1X1: ['-> e', '<- e, ee, s', '-> es, s', '<- se'],
  K1N: ['-> s', '...', '-> e', '<- e, ee', '-> se'],
  K1K: ['-> s', '<- s', '...', '-> e, es', '<- e, ee', '-> se'],
  KK1: ['-> s', '<- s', '...', '-> e', '<- e, ee, se, es'],
  K1K1: ['-> s', '<- s', '...', '-> e', '<- e, ee, es', '-> se'],
  K1X: ['-> s', '...', '-> e', '<- e, ee, s, es', '-> se'],
  KX1: ['-> s', '...', '-> e', '<- e, ee, se, s', '-> es'],
  K1X1: ['-> s', '...', '-> e', '<- e, ee, s', '-> se, es'],
  I1N: ['-> e, s', '<- e, ee', '-> se'],
  I1K: ['<- s', '...', '-> e, es, s', '<- e, ee', '-> se'],
  IK1: ['<- s', '...', '-> e, s', '<- e, ee, se, es'],
  I1K1: ['<- s', '...', '-> e, s', '<- e, ee, es', '-> se'],
  I1X: ['-> e, s', '<- e, ee, s, es', '-> se'],
  IX1: ['-> e, s', '<- e, ee, se, s', '-> es'],
  I1X1: ['-> e, s', '<- e, ee, s', '-> se, es'],
};

/** Names of the base patterns this engine knows, in the order of the spec. */
export const BASE_PATTERN_NAMES: readonly string[] = Object.keys(DEFINITIONS);

const TOKENS = new Set<string>(['e', 's', 'ee', 'es', 'se', 'ss', 'psk']);

function invalid(what: string): KeyhopError {
  return new KeyhopError(ErrorCodes.UNSUPPORTED, `Noise pattern ${what}`);
}

function parseLine(line: string): { fromInitiator: boolean; tokens: string[] } {
  const m = /^(->|<-) (.+)$/.exec(line);
  if (!m) throw invalid(`definition line "${line}" is malformed`);
  return { fromInitiator: m[1] === '->', tokens: m[2]!.split(', ') };
}

function build(baseName: string, lines: readonly string[]): HandshakePattern {
  const split = lines.indexOf('...');
  const pre = split < 0 ? [] : lines.slice(0, split);
  const body = split < 0 ? lines : lines.slice(split + 1);
  const initiatorPreMessage: PreMessageToken[] = [];
  const responderPreMessage: PreMessageToken[] = [];
  for (const line of pre) {
    const { fromInitiator, tokens } = parseLine(line);
    for (const t of tokens) {
      if (t !== 'e' && t !== 's') throw invalid(`${baseName}: pre-message token "${t}"`);
      (fromInitiator ? initiatorPreMessage : responderPreMessage).push(t);
    }
  }
  const messages = body.map((line): MessagePattern => {
    const { fromInitiator, tokens } = parseLine(line);
    for (const t of tokens) if (!TOKENS.has(t)) throw invalid(`${baseName}: token "${t}"`);
    return { fromInitiator, tokens: tokens as Token[] };
  });
  return {
    name: baseName,
    baseName,
    modifiers: [],
    initiatorPreMessage,
    responderPreMessage,
    messages,
    oneWay: messages.every((m) => m.fromInitiator),
    pskCount: 0,
  };
}

/**
 * Applies `psk0`..`pskN` (§9.2): `psk0` puts a `psk` token at the start of the first message,
 * `pskN` (N ≥ 1) at the end of message N. Any other modifier (fallback, hfs, ...) is UNSUPPORTED.
 */
function applyModifiers(
  base: HandshakePattern,
  name: string,
  modifiers: readonly string[],
): HandshakePattern {
  const messages = base.messages.map((m) => ({ fromInitiator: m.fromInitiator, tokens: [...m.tokens] }));
  const seen = new Set<number>();
  for (const mod of modifiers) {
    const m = /^psk(0|[1-9][0-9]*)$/.exec(mod);
    if (!m) throw invalid(`${name}: modifier "${mod}" is not supported`);
    const n = Number(m[1]);
    if (n > messages.length)
      throw invalid(`${name}: ${mod} but the pattern has ${messages.length} message(s)`);
    if (seen.has(n)) throw invalid(`${name}: ${mod} appears twice`);
    seen.add(n);
    if (n === 0) messages[0]!.tokens.unshift('psk');
    else messages[n - 1]!.tokens.push('psk');
  }
  return { ...base, name, modifiers: [...modifiers], messages, pskCount: seen.size };
}

/**
 * Checks the rules of §7.3 and §9.3 on a (possibly modified) pattern. Every built-in pattern
 * passes; the check guards the modifier logic and anything added later.
 */
export function checkPatternValidity(p: HandshakePattern): void {
  const sent = { ie: 0, is: 0, re: 0, rs: 0 };
  for (const t of p.initiatorPreMessage) sent[t === 'e' ? 'ie' : 'is']++;
  for (const t of p.responderPreMessage) sent[t === 'e' ? 're' : 'rs']++;
  const done = new Set<Token>();
  // §7.3 rule 4 and §9.3, tracked per party: the DH tokens each party has performed.
  for (const [i, m] of p.messages.entries()) {
    const where = `${p.name} message ${i + 1}`;
    if (i > 0 && p.messages[i - 1]!.fromInitiator === m.fromInitiator)
      throw invalid(`${where}: same sender twice`);
    for (const t of m.tokens) {
      switch (t) {
        case 'e':
        case 's': {
          const key = `${m.fromInitiator ? 'i' : 'r'}${t}` as keyof typeof sent;
          sent[key]++;
          break;
        }
        case 'ee':
        case 'es':
        case 'se':
        case 'ss': {
          // ee: both e; es: initiator e, responder s; se: initiator s, responder e; ss: both s.
          const ik = `i${t[0]}` as keyof typeof sent;
          const rk = `r${t[1]}` as keyof typeof sent;
          if (sent[ik] === 0 || sent[rk] === 0) throw invalid(`${where}: "${t}" before both keys are known`);
          if (done.has(t)) throw invalid(`${where}: "${t}" appears twice`);
          done.add(t);
          break;
        }
        case 'psk':
          break;
      }
    }
  }
  for (const [k, v] of Object.entries(sent))
    if (v > 1) throw invalid(`${p.name}: key ${k} is sent more than once`);
  // Rule 4: a party that mixed its static key with a remote key must also have mixed its
  // ephemeral key with that remote key before it encrypts a payload. §9.3: after a psk, a party
  // encrypts only if it has sent an ephemeral key (before or after the psk token).
  const doneSoFar = new Set<Token>();
  let pskSeen = false;
  const sentE = {
    initiator: p.initiatorPreMessage.includes('e'),
    responder: p.responderPreMessage.includes('e'),
  };
  for (const [i, m] of p.messages.entries()) {
    const party = m.fromInitiator ? 'initiator' : 'responder';
    for (const t of m.tokens) {
      if (t === 'psk') pskSeen = true;
      else if (t === 'e') sentE[party] = true;
      else if (t !== 's') doneSoFar.add(t);
    }
    const has = (t: Token) => doneSoFar.has(t);
    const bad = m.fromInitiator
      ? (has('se') && !has('ee')) || (has('ss') && !has('es'))
      : (has('es') && !has('ee')) || (has('ss') && !has('se'));
    if (bad)
      throw invalid(`${p.name} message ${i + 1}: payload encrypted without ephemeral-key DH (§7.3 rule 4)`);
    if (pskSeen && !sentE[party])
      throw invalid(`${p.name} message ${i + 1}: encrypts after psk without an "e" (§9.3)`);
  }
  // The same rules for the transport messages that follow (the responder of a one-way pattern
  // never sends any).
  const has = (t: Token) => doneSoFar.has(t);
  const initiatorBad =
    (has('se') && !has('ee')) || (has('ss') && !has('es')) || (pskSeen && !sentE.initiator);
  const responderBad =
    (has('es') && !has('ee')) || (has('ss') && !has('se')) || (pskSeen && !sentE.responder);
  if (initiatorBad || (!p.oneWay && responderBad))
    throw invalid(`${p.name}: transport payloads would be unsafe`);
}

const cache = new Map<string, HandshakePattern>();

/**
 * Parses the pattern part of a protocol name: a base pattern followed by `+`-separated
 * modifiers, e.g. `XX`, `XXpsk3`, `NNpsk0+psk2`, `I1K1psk1`. Unknown names: UNSUPPORTED.
 */
export function parsePattern(name: string): HandshakePattern {
  const cached = cache.get(name);
  if (cached) return cached;
  const m = /^([NKXI]1?(?:[NKX]1?)?)(.*)$/.exec(name);
  const baseName = m?.[1];
  const lines = baseName === undefined ? undefined : DEFINITIONS[baseName];
  if (!m || baseName === undefined || !lines) throw invalid(`"${name}" is not supported`);
  const rest = m[2]!;
  const modifiers = rest === '' ? [] : rest.split('+');
  const pattern = applyModifiers(build(baseName, lines), name, modifiers);
  checkPatternValidity(pattern);
  for (const msg of pattern.messages) Object.freeze(msg.tokens);
  Object.freeze(pattern.messages);
  Object.freeze(pattern);
  cache.set(name, pattern);
  return pattern;
}
