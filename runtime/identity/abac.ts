import { ErrorCodes, KeyhopError } from '../errors.js';
import type { AccessControl, AccessRequest } from '../routing/access-control.js';
import type { Identifier } from './identifier.js';

/**
 * Attribute-based access control with Ockam's policy language (ockam_abac @ fb8fb64c: parser.rs,
 * eval.rs, boolean_expr.rs, abac.rs). A policy is either
 *
 * - a full expression, an S-expression such as
 *   `(and (= subject.role "admin") (member? subject.site ["a" "b"]))`, or
 * - the boolean shorthand `admin and (ops or not guest)`, where each name `n` stands for
 *   `(= subject.n "true")`.
 *
 * `parsePolicy` tries the shorthand first, then the full form, as Ockam does. Policies are
 * evaluated against an authenticated peer: `subject.identifier` (its identifier as text),
 * `subject.has_credential` (a bool) and `subject.<name>` for every text attribute of its
 * credentials. Anything but a `true` result, including every evaluation error (unknown name,
 * type mismatch), denies. As in Ockam, an attribute the subject lacks is an error, not false:
 * `admin or enroller` denies a peer whose credential has `enroller` but no `admin` attribute
 * (`or` stops at the first true operand, so `enroller or admin` admits it).
 *
 * keyhop is stricter than Ockam where Ockam silently accepts nonsense: unbalanced brackets,
 * lists whose head is not a known operator, wrong operator arity, and a policy that is a bare
 * value rather than an operator expression are parse errors (POLICY_INVALID with the offset of
 * the problem) instead of policies that always deny; in the shorthand, `and`/`or`/`not` are whole
 * words (Ockam reads `notary` as `not ary`) and surrounding whitespace is allowed.
 */

// ---- Expressions --------------------------------------------------------------------------------

export type Expr =
  | { readonly kind: 'str'; readonly value: string }
  | { readonly kind: 'int'; readonly value: bigint }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'ident'; readonly name: string }
  | { readonly kind: 'seq'; readonly items: readonly Expr[] }
  | { readonly kind: 'list'; readonly items: readonly Expr[] };

export const str = (value: string): Expr => ({ kind: 'str', value });
export const bool = (value: boolean): Expr => ({ kind: 'bool', value });
export const ident = (name: string): Expr => ({ kind: 'ident', name });
export const list = (items: readonly Expr[]): Expr => ({ kind: 'list', items });
export const seq = (items: readonly Expr[]): Expr => ({ kind: 'seq', items });

/** Longest policy text accepted, in UTF-16 code units. */
export const MAX_POLICY_LENGTH = 4096;
/** Deepest nesting of lists, sequences, parentheses and `not`s. */
export const MAX_POLICY_DEPTH = 32;

/** POLICY_INVALID with the offset (UTF-16 code units) in the policy text where parsing failed. */
export class PolicyError extends KeyhopError {
  readonly position: number;
  /** The problem, without the offset. */
  readonly detail: string;

  constructor(detail: string, position: number, note = '') {
    super(ErrorCodes.POLICY_INVALID, `policy: ${detail} at offset ${position}${note}`);
    this.name = 'PolicyError';
    this.position = position;
    this.detail = detail;
  }
}

/** Operators and their argument counts [min, max]. */
const OPERATORS: ReadonlyMap<string, readonly [number, number]> = new Map([
  ['and', [0, Number.POSITIVE_INFINITY]],
  ['or', [0, Number.POSITIVE_INFINITY]],
  ['not', [1, 1]],
  ['if', [3, 3]],
  ['=', [0, Number.POSITIVE_INFINITY]],
  ['!=', [0, Number.POSITIVE_INFINITY]],
  ['<', [2, Number.POSITIVE_INFINITY]],
  ['>', [2, Number.POSITIVE_INFINITY]],
  ['member?', [2, 2]],
]);

export const POLICY_OPERATORS: readonly string[] = [...OPERATORS.keys()];

// ---- Lexer (the subset of the WebAssembly text lexer Ockam's parser uses) -----------------------

type Token =
  | { readonly t: '(' | ')' | '[' | ']'; readonly pos: number }
  | { readonly t: 'value'; readonly pos: number; readonly value: Expr };

const IDCHARS = /[0-9A-Za-z!#$%&'*+\-./:<=>?@\\^_`|~]/;
const DEC_INT = /^[+-]?\d(?:_?\d)*$/;
const HEX_INT = /^([+-]?)0x([0-9a-fA-F](?:_?[0-9a-fA-F])*)$/;
const DEC_FLOAT = /^[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?$/;
const DEC_FLOAT_UNDERSCORES = /^[+-]?\d[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?[\d_]+)?$/;
const HEX_FLOAT = /^[+-]?0x[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[\d_]+)?$/;
const SPECIAL_FLOAT = /^([+-]?)(inf|nan|nan:0x[0-9a-fA-F](?:_?[0-9a-fA-F])*)$/;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function atom(text: string, pos: number): Expr {
  if (DEC_INT.test(text) || HEX_INT.test(text)) {
    const hex = HEX_INT.exec(text);
    const clean = text.replaceAll('_', '');
    const v = hex ? BigInt(`0x${hex[2]!.replaceAll('_', '')}`) * (hex[1] === '-' ? -1n : 1n) : BigInt(clean);
    if (v < I64_MIN || v > I64_MAX) throw new PolicyError(`integer ${text} does not fit in 64 bits`, pos);
    return { kind: 'int', value: v };
  }
  const special = SPECIAL_FLOAT.exec(text);
  if (special) {
    const v = special[2] === 'inf' ? Number.POSITIVE_INFINITY : Number.NaN;
    return { kind: 'float', value: special[1] === '-' ? -v : v };
  }
  if (DEC_FLOAT.test(text)) return { kind: 'float', value: Number(text) };
  if (DEC_FLOAT_UNDERSCORES.test(text)) throw new PolicyError(`float ${text} has '_' separators`, pos);
  if (HEX_FLOAT.test(text) && /[.pP]/.test(text)) {
    throw new PolicyError(`hexadecimal float ${text} is not supported`, pos);
  }
  if (text === 'true' || text === 'false') return { kind: 'bool', value: text === 'true' };
  return { kind: 'ident', name: text };
}

function encodeCodePoint(cp: number, out: number[]): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
}

const ESCAPES: Readonly<Record<string, number>> = { t: 9, n: 10, r: 13, '"': 34, "'": 39, '\\': 92 };

/** A string literal starting at `start` (the opening quote); returns it and the offset after it. */
function lexString(src: string, start: number): [Expr, number] {
  const bytes: number[] = [];
  let i = start + 1;
  for (;;) {
    if (i >= src.length) throw new PolicyError('unterminated string', start);
    const c = src.charCodeAt(i);
    if (c === 0x22) return [{ kind: 'str', value: decodeUtf8(bytes, start) }, i + 1];
    if (c === 0x5c) {
      const e = src[i + 1];
      if (e === undefined) throw new PolicyError('unterminated string', start);
      const simple = ESCAPES[e];
      if (simple !== undefined) {
        bytes.push(simple);
        i += 2;
      } else if (e === 'u') {
        const m = /^\{([0-9a-fA-F](?:_?[0-9a-fA-F]){0,7})\}/.exec(src.slice(i + 2, i + 14));
        const cp = m ? Number.parseInt(m[1]!.replaceAll('_', ''), 16) : -1;
        if (!m || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) {
          throw new PolicyError('invalid \\u{…} escape', i);
        }
        encodeCodePoint(cp, bytes);
        i += 2 + m[0].length;
      } else if (/^[0-9a-fA-F]{2}$/.test(src.slice(i + 1, i + 3))) {
        bytes.push(Number.parseInt(src.slice(i + 1, i + 3), 16));
        i += 3;
      } else {
        throw new PolicyError(`invalid escape \\${e}`, i);
      }
      continue;
    }
    if (c < 0x20 || c === 0x7f) throw new PolicyError('control character in string', i);
    const cp = src.codePointAt(i)!;
    if (cp >= 0xd800 && cp < 0xe000) throw new PolicyError('unpaired surrogate in string', i);
    encodeCodePoint(cp, bytes);
    i += cp > 0xffff ? 2 : 1;
  }
}

function decodeUtf8(bytes: number[], pos: number): string {
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new PolicyError('string is not valid UTF-8', pos);
  }
}

function lex(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (src.startsWith(';;', i)) {
      const nl = src.indexOf('\n', i);
      i = nl < 0 ? src.length : nl + 1;
    } else if (src.startsWith('(;', i)) {
      const start = i;
      let depth = 0;
      do {
        if (i >= src.length) throw new PolicyError('unterminated block comment', start);
        if (src.startsWith('(;', i)) {
          depth++;
          i += 2;
        } else if (src.startsWith(';)', i)) {
          depth--;
          i += 2;
        } else i++;
      } while (depth > 0);
    } else if (c === '(' || c === ')' || c === '[' || c === ']') {
      tokens.push({ t: c, pos: i });
      i++;
    } else if (c === '"') {
      const [value, next] = lexString(src, i);
      tokens.push({ t: 'value', pos: i, value });
      i = next;
    } else if (IDCHARS.test(c)) {
      const start = i;
      while (i < src.length && IDCHARS.test(src[i]!)) i++;
      tokens.push({ t: 'value', pos: start, value: atom(src.slice(start, i), start) });
    } else {
      throw new PolicyError(`unexpected character ${JSON.stringify(c)}`, i);
    }
  }
  return tokens;
}

function checkLength(src: string): void {
  if (typeof src !== 'string') throw new PolicyError('not a string', 0);
  if (src.length > MAX_POLICY_LENGTH) {
    throw new PolicyError(`longer than ${MAX_POLICY_LENGTH} characters`, MAX_POLICY_LENGTH);
  }
}

// ---- Full expressions ---------------------------------------------------------------------------

/**
 * Parses a full (S-expression) policy. Several top-level items form one list, so
 * `and (= a b) (= c d)` is `(and (= a b) (= c d))`, as in Ockam.
 */
export function parseExpression(src: string): Expr {
  checkLength(src);
  const frames: { t: '(' | '['; pos: number; items: Expr[] }[] = [];
  const top: Expr[] = [];
  const positions = new Map<Expr, number>();
  for (const tok of lex(src)) {
    const items = frames[frames.length - 1]?.items ?? top;
    if (tok.t === 'value') {
      items.push(tok.value);
      positions.set(tok.value, tok.pos);
    } else if (tok.t === '(' || tok.t === '[') {
      if (frames.length >= MAX_POLICY_DEPTH) {
        throw new PolicyError(`nested deeper than ${MAX_POLICY_DEPTH} levels`, tok.pos);
      }
      frames.push({ t: tok.t, pos: tok.pos, items: [] });
    } else {
      const frame = frames.pop();
      if (!frame) throw new PolicyError(`unexpected '${tok.t}'`, tok.pos);
      const closer = frame.t === '(' ? ')' : ']';
      if (tok.t !== closer) throw new PolicyError(`expected '${closer}'`, tok.pos);
      const e: Expr = frame.t === '(' ? list(frame.items) : seq(frame.items);
      positions.set(e, frame.pos);
      (frames[frames.length - 1]?.items ?? top).push(e);
    }
  }
  const open = frames.pop();
  if (open) throw new PolicyError(`unclosed '${open.t}'`, open.pos);
  if (top.length === 0) throw new PolicyError('empty policy', 0);
  const expr = top.length === 1 ? top[0]! : list(top);
  if (top.length > 1) positions.set(expr, positions.get(top[0]!) ?? 0);
  validate(expr, positions);
  return expr;
}

/** Every non-empty list must apply a known operator to the right number of arguments. */
function validate(expr: Expr, positions: ReadonlyMap<Expr, number>): void {
  if (expr.kind === 'seq') for (const e of expr.items) validate(e, positions);
  if (expr.kind !== 'list' || expr.items.length === 0) return;
  const [head, ...args] = expr.items;
  const pos = positions.get(head!) ?? positions.get(expr) ?? 0;
  if (head!.kind !== 'ident')
    throw new PolicyError(`expected an operator, found ${formatExpression(head!)}`, pos);
  const arity = OPERATORS.get(head!.name);
  if (!arity) throw new PolicyError(`unknown operator ${head!.name}`, pos);
  if (args.length < arity[0] || args.length > arity[1]) {
    const want = arity[0] === arity[1] ? `${arity[0]}` : `at least ${arity[0]}`;
    throw new PolicyError(`${head!.name} takes ${want} argument(s), not ${args.length}`, pos);
  }
  for (const e of args) validate(e, positions);
}

function formatString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (cp < 0x20 || cp === 0x7f) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

function formatFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x < 0 ? '-inf' : '+inf';
  if (Object.is(x, -0)) return '-0.0';
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** The S-expression text of an expression (parses back to the same expression). */
export function formatExpression(expr: Expr): string {
  switch (expr.kind) {
    case 'str':
      return formatString(expr.value);
    case 'int':
      return expr.value.toString();
    case 'float':
      return formatFloat(expr.value);
    case 'bool':
      return String(expr.value);
    case 'ident':
      return expr.name;
    case 'list':
      return `(${expr.items.map(formatExpression).join(' ')})`;
    case 'seq':
      return `[${expr.items.map(formatExpression).join(' ')}]`;
  }
}

// ---- Boolean shorthand --------------------------------------------------------------------------

export type BooleanExpr =
  | { readonly op: 'name'; readonly name: string }
  | { readonly op: 'and' | 'or'; readonly args: readonly BooleanExpr[] }
  | { readonly op: 'not'; readonly arg: BooleanExpr };

const NAME = /[A-Za-z_-][A-Za-z0-9._-]*/y;
const KEYWORDS = new Set(['and', 'or', 'not']);

/**
 * Parses the shorthand: `expr := and_expr ('or' and_expr)*`, `and_expr := not_expr ('and'
 * not_expr)*`, `not_expr := 'not' not_expr | '(' expr ')' | name`, names
 * `[A-Za-z_-][A-Za-z0-9._-]*`. `not` binds tighter than `and`, `and` tighter than `or`.
 */
export function parseBooleanExpression(src: string): BooleanExpr {
  checkLength(src);
  let i = 0;
  let depth = 0;
  const skip = (): void => {
    while (i < src.length && ' \t\r\n'.includes(src[i]!)) i++;
  };
  const peekWord = (): string | undefined => {
    skip();
    NAME.lastIndex = i;
    return NAME.exec(src)?.[0];
  };
  const enter = (): void => {
    if (++depth > MAX_POLICY_DEPTH) throw new PolicyError(`nested deeper than ${MAX_POLICY_DEPTH} levels`, i);
  };
  const binary = (op: 'and' | 'or', operand: () => BooleanExpr): BooleanExpr => {
    const args = [operand()];
    while (peekWord() === op) {
      i += op.length;
      args.push(operand());
    }
    return args.length === 1 ? args[0]! : { op, args };
  };
  const expr = (): BooleanExpr => binary('or', andExpr);
  const andExpr = (): BooleanExpr => binary('and', notExpr);
  const notExpr = (): BooleanExpr => {
    const word = peekWord();
    if (word === 'not') {
      i += 3;
      enter();
      const arg = notExpr();
      depth--;
      return { op: 'not', arg };
    }
    if (src[i] === '(') {
      const open = i++;
      enter();
      const e = expr();
      depth--;
      skip();
      if (src[i] !== ')')
        throw new PolicyError(i < src.length ? "expected ')'" : `unclosed '('`, i < src.length ? i : open);
      i++;
      return e;
    }
    if (word === undefined || KEYWORDS.has(word)) {
      throw new PolicyError(
        i < src.length ? "expected a name, 'not' or '('" : "expected a name, 'not' or '(' (end of policy)",
        i,
      );
    }
    i += word.length;
    return { op: 'name', name: word };
  };
  const e = expr();
  skip();
  if (i < src.length) {
    throw new PolicyError(
      src[i] === ')' ? "unexpected ')'" : "expected 'and', 'or' or the end of the policy",
      i,
    );
  }
  return e;
}

/** `n` → `(= subject.n "true")`; and/or/not map to the operators (and/or chains n-ary). */
export function booleanToExpression(b: BooleanExpr): Expr {
  switch (b.op) {
    case 'name':
      return list([ident('='), ident(`subject.${b.name}`), str('true')]);
    case 'not':
      return list([ident('not'), booleanToExpression(b.arg)]);
    default:
      return list([ident(b.op), ...b.args.map(booleanToExpression)]);
  }
}

// ---- Evaluation ---------------------------------------------------------------------------------

/** Names a policy can read, and their values. */
export type Environment = ReadonlyMap<string, Expr>;

function evalError(detail: string): KeyhopError {
  return new KeyhopError(ErrorCodes.POLICY_INVALID, `policy evaluation: ${detail}`);
}

function describe(e: Expr): string {
  const s = formatExpression(e);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function equals(a: Expr, b: Expr): boolean {
  if (a.kind !== b.kind) throw evalError(`cannot compare ${describe(a)} with ${describe(b)}`);
  switch (a.kind) {
    case 'seq':
    case 'list': {
      const bi = (b as typeof a).items;
      return a.items.length === bi.length && a.items.every((x, i) => equals(x, bi[i]!));
    }
    case 'ident':
      return a.name === (b as typeof a).name;
    default:
      return a.value === (b as typeof a).value;
  }
}

function compareStrings(a: string, b: string): number {
  // By code point, as Rust compares UTF-8 strings (JS's < compares UTF-16 units).
  const x = [...a];
  const y = [...b];
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** Negative, zero or positive; NaN when not ordered (a float NaN). */
function compare(a: Expr, b: Expr): number {
  if (a.kind !== b.kind) throw evalError(`cannot compare ${describe(a)} with ${describe(b)}`);
  switch (a.kind) {
    case 'str':
      return compareStrings(a.value, (b as typeof a).value);
    case 'ident':
      return compareStrings(a.name, (b as typeof a).name);
    case 'int': {
      const y = (b as typeof a).value;
      return a.value < y ? -1 : a.value > y ? 1 : 0;
    }
    case 'float':
      return a.value - (b as typeof a).value;
    case 'bool':
      return Number(a.value) - Number((b as typeof a).value);
    default: {
      const bi = (b as typeof a).items;
      if (a.items.length !== bi.length) return a.items.length - bi.length;
      for (let i = 0; i < bi.length; i++) {
        const c = compare(a.items[i]!, bi[i]!);
        if (c !== 0) return c;
      }
      return 0;
    }
  }
}

function asBool(e: Expr): boolean {
  if (e.kind !== 'bool') throw evalError(`expected a bool, found ${describe(e)}`);
  return e.value;
}

/**
 * Evaluates an expression (Ockam's eval.rs). Identifiers are looked up in `env`; lists apply
 * their operator; and/or short-circuit. Throws POLICY_INVALID on an unknown name or operator,
 * a type mismatch or a wrong argument count.
 */
export function evaluateExpression(expr: Expr, env: Environment): Expr {
  switch (expr.kind) {
    case 'ident': {
      const v = env.get(expr.name);
      if (v === undefined) throw evalError(`unknown name ${expr.name}`);
      return v;
    }
    case 'seq':
      return seq(expr.items.map((e) => evaluateExpression(e, env)));
    case 'list':
      break;
    default:
      return expr;
  }
  if (expr.items.length === 0) return expr;
  const [head, ...args] = expr.items;
  if (head!.kind !== 'ident') throw evalError(`expected (operator …), found ${describe(expr)}`);
  const arity = OPERATORS.get(head!.name);
  if (!arity) throw evalError(`unknown operator ${head!.name}`);
  if (args.length < arity[0] || args.length > arity[1]) {
    throw evalError(`wrong number of arguments in ${describe(expr)}`);
  }
  const ev = (e: Expr): Expr => evaluateExpression(e, env);
  switch (head!.name) {
    case 'and':
      for (const a of args) if (!asBool(ev(a))) return bool(false);
      return bool(true);
    case 'or':
      for (const a of args) if (asBool(ev(a))) return bool(true);
      return bool(false);
    case 'not':
      return bool(!asBool(ev(args[0]!)));
    case 'if':
      return asBool(ev(args[0]!)) ? ev(args[1]!) : ev(args[2]!);
    case '=':
    case '!=': {
      let same = true;
      if (args.length > 0) {
        const first = ev(args[0]!);
        for (const a of args.slice(1)) {
          if (!equals(first, ev(a))) {
            same = false;
            break;
          }
        }
      }
      return bool(head!.name === '=' ? same : !same);
    }
    case '<':
    case '>': {
      let last = ev(args[0]!);
      for (const a of args.slice(1)) {
        const next = ev(a);
        const c = compare(last, next);
        if (!(head!.name === '<' ? c < 0 : c > 0)) return bool(false);
        last = next;
      }
      return bool(true);
    }
    default: {
      // member?
      const needle = ev(args[0]!);
      const hay = ev(args[1]!);
      if (hay.kind !== 'seq') throw evalError(`member? expects a sequence, found ${describe(hay)}`);
      return bool(hay.items.some((e) => e.kind === needle.kind && equals(needle, e)));
    }
  }
}

// ---- Subjects and policies ----------------------------------------------------------------------

/** An authenticated peer as ABAC sees it. */
export interface AbacSubject {
  readonly identifier: Identifier | string;
  /**
   * Text attributes from the peer's verified credentials; `undefined` when it presented none
   * (then `subject.has_credential` is false).
   */
  readonly attributes?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
}

export const SUBJECT_IDENTIFIER = 'subject.identifier';
export const SUBJECT_HAS_CREDENTIAL = 'subject.has_credential';

/**
 * The environment of a subject: `subject.identifier`, `subject.has_credential`, and
 * `subject.<key>` per attribute. An attribute named `identifier` or `has_credential` is ignored:
 * credentials cannot override what the channel authenticated.
 */
export function subjectEnvironment(subject: AbacSubject): Map<string, Expr> {
  const env = new Map<string, Expr>();
  const attrs = subject.attributes;
  const entries = attrs === undefined ? [] : attrs instanceof Map ? [...attrs] : Object.entries(attrs);
  for (const [k, v] of entries) env.set(`subject.${k}`, str(v));
  env.set(SUBJECT_IDENTIFIER, str(String(subject.identifier)));
  env.set(SUBJECT_HAS_CREDENTIAL, bool(attrs !== undefined));
  return env;
}

export class Policy {
  private constructor(
    /** The text it was parsed from. */
    readonly source: string,
    readonly kind: 'boolean' | 'expression',
    readonly expression: Expr,
  ) {}

  /** See parsePolicy. */
  static parse(src: string): Policy {
    checkLength(src);
    if (src.trim() === '') throw new PolicyError('empty policy', 0);
    let boolError: PolicyError;
    try {
      return new Policy(src, 'boolean', booleanToExpression(parseBooleanExpression(src)));
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      boolError = e;
    }
    let exprError: PolicyError;
    try {
      const expr = parseExpression(src);
      // A bare value or () can never evaluate to true: refuse it rather than deny everyone.
      if (expr.kind === 'list' && expr.items.length > 0) return new Policy(src, 'expression', expr);
      exprError = new PolicyError('expected an operator expression such as (= subject.role "admin")', 0);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      exprError = e;
    }
    const [main, other, otherForm] = looksLikeExpression(src)
      ? [exprError, boolError, 'a boolean expression']
      : [boolError, exprError, 'an S-expression'];
    throw new PolicyError(
      main.detail,
      main.position,
      ` (as ${otherForm}: ${other.detail} at offset ${other.position})`,
    );
  }

  /** Whether `subject` satisfies the policy. Errors during evaluation deny. */
  evaluate(subject: AbacSubject): boolean {
    return this.evaluateIn(subjectEnvironment(subject));
  }

  evaluateIn(env: Environment): boolean {
    try {
      const r = evaluateExpression(this.expression, env);
      return r.kind === 'bool' && r.value;
    } catch {
      return false;
    }
  }

  toString(): string {
    return this.source;
  }
}

/**
 * Which error to report when a policy is neither form: the S-expression one if the text has
 * characters only S-expressions use, or starts like `(op arg`; else the boolean one.
 */
function looksLikeExpression(src: string): boolean {
  if (/["[\]=<>!?;]/.test(src)) return true;
  const m = /^\s*\(\s*([A-Za-z_-][A-Za-z0-9._-]*)\s+([A-Za-z_-][A-Za-z0-9._-]*|\()/.exec(src);
  return m !== null && m[2] !== 'and' && m[2] !== 'or';
}

/**
 * Parses a policy: the boolean shorthand if it is one, else a full expression. Throws a
 * PolicyError (POLICY_INVALID, with the offset) if it is neither.
 */
export function parsePolicy(src: string): Policy {
  return Policy.parse(src);
}

/**
 * A mailbox access control that admits a message only if `subjectOf` finds an authenticated
 * peer for it (from the secure channel it arrived on) and that peer satisfies `policy`.
 */
export function abacAccessControl(
  policy: Policy | string,
  subjectOf: (request: AccessRequest) => AbacSubject | undefined,
): AccessControl {
  const p = typeof policy === 'string' ? Policy.parse(policy) : policy;
  return (request) => {
    const subject = subjectOf(request);
    return subject !== undefined && p.evaluate(subject);
  };
}
