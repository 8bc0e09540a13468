import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../test/support/property-runs.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { Address } from '../routing/address.js';
import { Message } from '../routing/message.js';
import { Route } from '../routing/route.js';
import {
  type AbacSubject,
  abacAccessControl,
  booleanToExpression,
  type Expr,
  evaluateExpression,
  formatExpression,
  MAX_POLICY_DEPTH,
  MAX_POLICY_LENGTH,
  PolicyError,
  parseBooleanExpression,
  parseExpression,
  parsePolicy,
  subjectEnvironment,
} from './abac.js';

const ID = 'I923829d0397a06fa862be5a87b7966959b8ef99ab6455b843ca9131a747b4819';

function policyError(src: string): PolicyError {
  try {
    parsePolicy(src);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    expect((e as PolicyError).code).toBe(ErrorCodes.POLICY_INVALID);
    return e as PolicyError;
  }
  throw new Error(`expected ${JSON.stringify(src)} to be refused`);
}

describe('parsing full expressions', () => {
  it.each([
    ['(= subject.role "admin")', '(= subject.role "admin")'],
    ['  (and (= a "x")\n (not (= b "y")))  ', '(and (= a "x") (not (= b "y")))'],
    ['and (= a "x") (= b "y")', '(and (= a "x") (= b "y"))'],
    ['(member? subject.site ["a" "b" "c"])', '(member? subject.site ["a" "b" "c"])'],
    ['(< 1 2 0x10 -3 +4 1_000)', '(< 1 2 16 -3 4 1000)'],
    ['(> 1.5 1e3 -2.5e-3 inf -inf nan 1.)', '(> 1.5 1000.0 -0.0025 +inf -inf nan 1.0)'],
    ['(if true false true)', '(if true false true)'],
    ['(= "\\t\\n\\r\\"\\\'\\\\ \\u{1F600} \\41")', '(= "\\t\\n\\r\\"\'\\\\ 😀 A")'],
    ['(or) ;; a comment\n', '(or)'],
    ['(; block (; nested ;) ;) (and)', '(and)'],
    ['()', '()'],
    ['(= $x subject.a-b.c_d)', '(= $x subject.a-b.c_d)'],
    ['(= "ünïcødé" "日本")', '(= "ünïcødé" "日本")'],
  ])('%j → %s', (src, formatted) => {
    expect(formatExpression(parseExpression(src))).toBe(formatted);
  });

  it('keeps numbers, bools and identifiers apart', () => {
    expect(parseExpression('(= 9223372036854775807 -9223372036854775808 true x)')).toEqual({
      kind: 'list',
      items: [
        { kind: 'ident', name: '=' },
        { kind: 'int', value: 9223372036854775807n },
        { kind: 'int', value: -9223372036854775808n },
        { kind: 'bool', value: true },
        { kind: 'ident', name: 'x' },
      ],
    });
  });

  it.each([
    ['', 'empty policy', 0],
    ['   ', 'empty policy', 0],
    ['(= a "b"', "unclosed '('", 0],
    ['(= a "b"))', "unexpected ')'", 9],
    ['(= a [1 2)', "expected ']'", 9],
    ['(= a "b)', 'unterminated string', 5],
    ['(= a "\\q")', 'invalid escape', 6],
    ['(= a "\\u{d800}")', 'invalid \\u', 6],
    ['(= a "\\ff")', 'not valid UTF-8', 5],
    ['(= a "tab\there")', 'control character', 9],
    ['(= a {b})', 'unexpected character "{"', 5],
    ['(= a, b)', 'unexpected character ","', 4],
    ['(= a é)', 'unexpected character "é"', 5],
    ['(= 9223372036854775808 1)', 'does not fit in 64 bits', 3],
    ['(= 1_0.5 1)', "'_' separators", 3],
    ['(= 0x1.8p3 1)', 'hexadecimal float', 3],
    ['(foo a b)', 'unknown operator foo', 1],
    ['("x" a b)', 'expected an operator', 1],
    ['(not a b)', 'not takes 1 argument', 1],
    ['(if a b)', 'if takes 3 argument', 1],
    ['(member? a)', 'member? takes 2', 1],
    ['(< a)', '< takes at least 2', 1],
    ['(and (= a "b") (bogus))', 'unknown operator bogus', 16],
    ['(; unterminated', 'unterminated block comment', 0],
    ['"x"', 'expected an operator expression', 0],
    ['()', "expected a name, 'not' or '('", 1],
    ['[(= a "b")]', 'expected an operator expression', 0],
  ])('refuses %j (%s)', (src, message, position) => {
    const e = policyError(src);
    expect(e.message).toContain(message);
    expect(e.position).toBe(position);
    expect(e.message).toContain(`at offset ${position}`);
  });

  it('limits length and depth', () => {
    const deep = `${'(and '.repeat(MAX_POLICY_DEPTH)}${')'.repeat(MAX_POLICY_DEPTH)}`;
    expect(formatExpression(parseExpression(deep))).toBe(
      deep.replaceAll(' )', ')').replaceAll('(and )', '(and)'),
    );
    const tooDeep = `${'(and '.repeat(MAX_POLICY_DEPTH + 1)}${')'.repeat(MAX_POLICY_DEPTH + 1)}`;
    expect(policyError(tooDeep).message).toContain('nested deeper');
    expect(policyError(`${'['.repeat(MAX_POLICY_DEPTH + 1)}`).message).toContain('nested deeper');
    const long = `(= subject.a "${'x'.repeat(MAX_POLICY_LENGTH)}")`;
    expect(policyError(long).message).toContain('longer than');
    expect(parsePolicy(`(= a "${'x'.repeat(MAX_POLICY_LENGTH - 9)}")`).kind).toBe('expression');
  });
});

describe('boolean shorthand', () => {
  it.each([
    ['a', '(= subject.a "true")'],
    ['a and b', '(and (= subject.a "true") (= subject.b "true"))'],
    ['a and b and c', '(and (= subject.a "true") (= subject.b "true") (= subject.c "true"))'],
    ['a or b', '(or (= subject.a "true") (= subject.b "true"))'],
    ['not a', '(not (= subject.a "true"))'],
    ['not not a', '(not (not (= subject.a "true")))'],
    ['( ( (a )))', '(= subject.a "true")'],
    ['a or b and not c', '(or (= subject.a "true") (and (= subject.b "true") (not (= subject.c "true"))))'],
    ['a and (b or not c)', '(and (= subject.a "true") (or (= subject.b "true") (not (= subject.c "true"))))'],
    [
      '(a or b) and (not c)',
      '(and (or (= subject.a "true") (= subject.b "true")) (not (= subject.c "true")))',
    ],
    [
      'ockam-relay and project.admin_1',
      '(and (= subject.ockam-relay "true") (= subject.project.admin_1 "true"))',
    ],
    [
      'notary and android or order',
      '(or (and (= subject.notary "true") (= subject.android "true")) (= subject.order "true"))',
    ],
    ['  a\tand\nb  ', '(and (= subject.a "true") (= subject.b "true"))'],
    ['_x or -y', '(or (= subject._x "true") (= subject.-y "true"))'],
  ])('%j means %s', (src, expr) => {
    const p = parsePolicy(src);
    expect(p.kind).toBe('boolean');
    expect(formatExpression(p.expression)).toBe(expr);
    expect(formatExpression(booleanToExpression(parseBooleanExpression(src)))).toBe(expr);
    expect(p.toString()).toBe(src);
  });

  it.each([
    ['a and', 5, 'expected a name'],
    ['a b', 2, "expected 'and', 'or'"],
    ['(a or b', 0, "unclosed '('"],
    ['(a or b c)', 8, "expected ')'"],
    ['a and or b', 6, 'expected a name'],
    ['1a', 0, 'expected a name'],
    ['.a', 0, 'expected a name'],
    ['a*b', 1, "expected 'and', 'or'"],
    ['a)', 1, "unexpected ')'"],
    ['not', 3, 'expected a name'],
  ])('refuses %j at offset %d', (src, position, message) => {
    const e = policyError(src);
    expect(e.position).toBe(position);
    expect(e.message).toContain(message);
  });

  it('limits nesting of parentheses and not', () => {
    expect(parsePolicy(`${'not '.repeat(MAX_POLICY_DEPTH)}a`).kind).toBe('boolean');
    expect(policyError(`${'not '.repeat(MAX_POLICY_DEPTH + 1)}a`).message).toContain('nested deeper');
    expect(
      policyError(`${'('.repeat(MAX_POLICY_DEPTH + 1)}a${')'.repeat(MAX_POLICY_DEPTH + 1)}`).message,
    ).toContain('nested deeper');
  });
});

describe('evaluation', () => {
  const subject: AbacSubject = {
    identifier: ID,
    attributes: {
      role: 'admin',
      site: 'lab',
      enroller: 'true',
      level: 'b',
      identifier: 'Ifake',
      has_credential: 'x',
    },
  };
  const noCredential: AbacSubject = { identifier: ID };

  it.each([
    ['(= subject.role "admin")', true],
    ['(= subject.role "user")', false],
    ['(!= subject.role "user")', true],
    [`(= subject.identifier "${ID}")`, true],
    ['(= subject.identifier "Ifake")', false],
    ['(= subject.has_credential true)', true],
    ['subject.has_credential', false], // shorthand: means (= subject.subject.has_credential "true")
    ['(= subject.has_credential "true")', false], // bool vs string: a type error denies
    ['(and (= subject.role "admin") (= subject.site "lab"))', true],
    ['(and (= subject.role "admin") (= subject.site "home"))', false],
    ['(or (= subject.role "x") (= subject.site "lab"))', true],
    ['(or (= subject.role "x") (= subject.nope "y"))', false], // unknown name denies
    ['(or (= subject.role "admin") (= subject.nope "y"))', true], // short-circuit
    ['(not (= subject.role "user"))', true],
    ['(if (= subject.site "lab") (= subject.role "admin") false)', true],
    ['(if (= subject.site "home") true (= subject.role "user"))', false],
    ['(member? subject.site ["home" "lab"])', true],
    ['(member? subject.site ["home" "office"])', false],
    ['(member? subject.site ["home" 1 true])', false],
    ['(< "a" subject.level "c")', true],
    ['(> subject.level "a")', true],
    ['(< 1 2 3)', true],
    ['(< 1 3 2)', false],
    ['(> 2.5 1.5)', true],
    ['(< 1 2.0)', false], // int vs float: type error
    ['(< nan 1.0)', false],
    ['(= nan nan)', false],
    ['(= 1 1 1)', true],
    ['(=)', true],
    ['(= [1 "a"] [1 "a"])', true],
    ['(and)', true],
    ['(or)', false],
    ['(and true 1)', false],
    ['enroller', true],
    ['enroller and not role', true],
    ['role', false], // "admin" is not "true"
    ['enroller or missing', true],
    ['missing or enroller', false], // as in Ockam: an unknown name is an error, and errors deny
    ['missing', false],
  ])('%s → %s', (src, expected) => {
    expect(parsePolicy(src).evaluate(subject)).toBe(expected);
  });

  it('has_credential is false without credentials, and attributes cannot override the identity', () => {
    expect(parsePolicy('(= subject.has_credential false)').evaluate(noCredential)).toBe(true);
    expect(parsePolicy('(= subject.has_credential false)').evaluate({ identifier: ID, attributes: {} })).toBe(
      false,
    );
    const env = subjectEnvironment(subject);
    expect(env.get('subject.identifier')).toEqual({ kind: 'str', value: ID });
    expect(env.get('subject.has_credential')).toEqual({ kind: 'bool', value: true });
    expect(env.get('subject.role')).toEqual({ kind: 'str', value: 'admin' });
    const fromMap = subjectEnvironment({ identifier: ID, attributes: new Map([['a', 'b']]) });
    expect(fromMap.get('subject.a')).toEqual({ kind: 'str', value: 'b' });
  });

  it('evaluateExpression reports errors as POLICY_INVALID', () => {
    const env = subjectEnvironment(subject);
    const fails = (src: string) => {
      try {
        evaluateExpression(parseExpression(src), env);
      } catch (e) {
        expect(e).toBeInstanceOf(KeyhopError);
        return (e as KeyhopError).code;
      }
      return 'ok';
    };
    expect(fails('(= subject.nope "x")')).toBe(ErrorCodes.POLICY_INVALID);
    expect(fails('(and 1)')).toBe(ErrorCodes.POLICY_INVALID);
    expect(fails('(member? "a" "abc")')).toBe(ErrorCodes.POLICY_INVALID);
    expect(fails('(= subject.role "admin")')).toBe('ok');
  });

  it('compares strings by code point, as Rust does', () => {
    // U+FF21 sorts before U+1F600 by code point, after it by UTF-16 unit.
    expect(parsePolicy('(< "\\u{ff21}" "\\u{1f600}")').evaluate(noCredential)).toBe(true);
  });
});

describe('access control', () => {
  it('admits only messages whose peer satisfies the policy', () => {
    const msg = new Message(Route.from([Address.local('a')]), Route.from([]), new Uint8Array(0));
    const request = { message: msg, from: Address.local('x'), to: Address.local('a') };
    const admin = abacAccessControl('admin', () => ({ identifier: ID, attributes: { admin: 'true' } }));
    const guest = abacAccessControl(parsePolicy('admin'), () => ({ identifier: ID, attributes: {} }));
    const anonymous = abacAccessControl('admin', () => undefined);
    expect(admin(request)).toBe(true);
    expect(guest(request)).toBe(false);
    expect(anonymous(request)).toBe(false);
    expect(() => abacAccessControl('(', () => undefined)).toThrow(PolicyError);
  });
});

describe('properties', () => {
  const policyChars = fc.constantFrom(
    ...'()[]" \n\t;\\=!<>.-_$?+0123456789abcdefxyzABCDEFnotandorifmembersubjct,{}éü😀\u0000\u007f',
  );
  const policyText = fc.oneof(
    fc.string({ unit: policyChars, maxLength: 80 }),
    fc.string({ maxLength: 80 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
  );

  it('random text parses or fails with POLICY_INVALID, and evaluation never throws', () => {
    fc.assert(
      fc.property(policyText, (src) => {
        let policy: ReturnType<typeof parsePolicy>;
        try {
          policy = parsePolicy(src);
        } catch (e) {
          expect(e).toBeInstanceOf(PolicyError);
          expect((e as PolicyError).code).toBe(ErrorCodes.POLICY_INVALID);
          expect((e as PolicyError).position).toBeGreaterThanOrEqual(0);
          expect((e as PolicyError).position).toBeLessThanOrEqual(src.length);
          return;
        }
        expect(typeof policy.evaluate({ identifier: ID, attributes: { a: 'true' } })).toBe('boolean');
      }),
      { numRuns: propertyRuns(3000) },
    );
  });

  const leaf: fc.Arbitrary<Expr> = fc.oneof(
    fc.string({ maxLength: 12 }).map((value) => ({ kind: 'str' as const, value })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((value) => ({ kind: 'int' as const, value })),
    fc.double({ noNaN: true }).map((value) => ({ kind: 'float' as const, value })),
    fc.boolean().map((value) => ({ kind: 'bool' as const, value })),
    fc
      .constantFrom('subject.a', 'subject.role', 'x-y.z', '$v')
      .map((name) => ({ kind: 'ident' as const, name })),
  );
  const expr: fc.Arbitrary<Expr> = fc.letrec<{ e: Expr }>((tie) => ({
    e: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.array(tie('e'), { maxLength: 3 }).map((items) => ({ kind: 'seq' as const, items })),
      fc
        .tuple(fc.constantFrom('and', 'or', '=', '!='), fc.array(tie('e'), { maxLength: 3 }))
        .map(([op, items]) => ({
          kind: 'list' as const,
          items: [{ kind: 'ident' as const, name: op }, ...items],
        })),
    ),
  })).e;

  it('formatted expressions parse back to themselves', () => {
    fc.assert(
      fc.property(expr, (e) => {
        const text = formatExpression(e);
        fc.pre(text.length <= MAX_POLICY_LENGTH);
        expect(parseExpression(text)).toEqual(e);
      }),
      { numRuns: propertyRuns(1000) },
    );
  });
});
