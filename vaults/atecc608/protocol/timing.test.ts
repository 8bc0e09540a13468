import { describe, expect, it } from 'vitest';
import { codeOf } from '../../../test/support/bytes.js';
import { Opcode } from './opcodes.js';
import { budgetIsFixed, budgetMs, dividerFromChipMode } from './timing.js';

describe('ATECC execution budgets (atecc608.md §1.7)', () => {
  it.each([
    [Opcode.SIGN, 115, 220, 665],
    [Opcode.GENKEY, 115, 215, 653],
    [Opcode.ECDH, 75, 172, 531],
    [Opcode.VERIFY, 105, 295, 1085],
    [Opcode.SELF_TEST, 250, 625, 2324],
    [Opcode.SHA, 36, 42, 75],
    [Opcode.GEN_DIG, 25, 35, 35],
    [Opcode.SECURE_BOOT, 80, 160, 480],
    [Opcode.RANDOM, 23, 23, 23],
    [Opcode.NONCE, 20, 20, 20],
    [Opcode.READ, 5, 5, 5],
    [Opcode.INFO, 5, 5, 5],
    [Opcode.WRITE, 45, 45, 45],
    [Opcode.LOCK, 35, 35, 35],
    [Opcode.COUNTER, 25, 25, 25],
    [Opcode.UPDATE_EXTRA, 10, 10, 10],
    [Opcode.KDF, 165, 165, 165],
    [Opcode.AES, 27, 27, 27],
  ])('opcode 0x%s: %i / %i / %i ms', (op, m0, m1, m2) => {
    expect([budgetMs(op, 'M0'), budgetMs(op, 'M1'), budgetMs(op, 'M2')]).toEqual([m0, m1, m2]);
    expect(budgetIsFixed(op)).toBe(m0 === m1 && m1 === m2);
  });

  it('has a budget for every opcode it names', () => {
    for (const op of Object.values(Opcode)) expect(budgetMs(op, 'M2')).toBeGreaterThan(0);
  });

  it('refuses an unknown opcode', () => {
    expect(codeOf(() => budgetMs(0x99, 'M0'))).toBe('ENCODE_LIMIT');
    expect(budgetIsFixed(0x99)).toBe(false);
  });

  it('reads the divider from ChipMode bits 3–7', () => {
    expect(dividerFromChipMode(0x00)).toBe('M0');
    expect(dividerFromChipMode(0x07)).toBe('M0');
    expect(dividerFromChipMode(0x28)).toBe('M1');
    expect(dividerFromChipMode(0x68)).toBe('M2');
    expect(dividerFromChipMode(0x6d)).toBe('M2');
    expect(dividerFromChipMode(0x08)).toBeUndefined();
  });
});
