import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { atAddress, CRYPTOAUTHLIB_KIT_TRACE, testChip } from '../links/kit-test-support.js';
import { encodeCommand } from '../protocol/packet.js';
import { EmulatedKit } from './kit-device.js';

describe('EmulatedKit', () => {
  it('answers the cryptoauthlib trace', async () => {
    const kit = new EmulatedKit(testChip());
    const replies: string[] = [];
    for (const line of CRYPTOAUTHLIB_KIT_TRACE) {
      replies.push(await kit.handleLine(line));
    }
    expect(replies[0]).toBe('ECC608 TWI 00(C0)');
    expect(replies[1]).toBe('00()');
    expect(replies[2]).toBe('00(04113343)');
    expect(replies[3]).toMatch(/^00\(23[0-9A-F]{68}\)$/);
    expect(replies[4]).toBe('00()');
    expect(replies[6]).toBe('00(07000060028038)');
  });

  it('parses like Microchip: any case, abbreviations, long forms, sha target', async () => {
    const chip = testChip();
    const kit = new EmulatedKit(chip);
    expect(await kit.handleLine('ECC:WAKE()')).toBe('00(04113343)');
    expect(await kit.handleLine('ecc:talk(0730000000035d)')).toBe('00(07000060028038)');
    expect(await kit.handleLine('s:t(0730000000035D)')).toBe('00(07000060028038)');
    expect(await kit.handleLine('E:SLEEP()')).toBe('00()');
    expect(chip.awake).toBe(false);
    expect(await kit.handleLine('e:physical:interface:i2c')).toBe('00()');
    expect(await kit.handleLine('board:version()')).toBe('00()');
  });

  it('answers errors with ATCA_STATUS values', async () => {
    const kit = new EmulatedKit(testChip());
    expect(await kit.handleLine('board:device(01)')).toBe('E0()');
    expect(await kit.handleLine('board:device(zz)')).toBe('E0()');
    expect(await kit.handleLine('nonsense')).toBe('E2()');
    expect(await kit.handleLine('E:t(073)')).toBe('E2()');
    expect(await kit.handleLine('E:t()')).toBe('E2()');
    expect(await kit.handleLine('ta:w()')).toBe('E2()');
    expect(await kit.handleLine('E:x()')).toBe('E2()');
    expect(await kit.handleLine(`E:t(${'00'.repeat(400)})`)).toBe('E4()');
    // Talking to a sleeping chip: it NACKs, the kit reports a communication failure.
    expect(await kit.handleLine('E:t(0730000000035D)')).toBe('F0()');
  });

  it('answers a wake to an awake chip with its output buffer, not the token', async () => {
    const kit = new EmulatedKit(testChip());
    expect(await kit.handleLine('E:w()')).toBe('00(04113343)');
    await kit.handleLine('E:t(0730000000035D)');
    expect(await kit.handleLine('E:w()')).toBe('00(07000060)');
    await kit.handleLine('E:i()');
    expect(await kit.handleLine('E:w()')).toBe('00(04113343)');
  });

  it('selects among several chips by 8-bit address', async () => {
    const a = testChip();
    const b = atAddress(testChip('b'), 0x35);
    const kit = new EmulatedKit([a, b]);
    expect(await kit.handleLine('board:device(01)')).toBe('ECC608 TWI 00(6A)');
    expect(await kit.handleLine('E:physical:select(6A)')).toBe('00()');
    await kit.handleLine('E:w()');
    expect(b.awake).toBe(true);
    expect(a.awake).toBe(false);
    // An unknown address keeps the selection (Microchip's select answers 00() regardless).
    expect(await kit.handleLine('E:physical:select(10)')).toBe('00()');
    expect(kit.chip).toBe(b);
  });

  it('reports chip errors as ATCA_STATUS in atca-status mode, raw otherwise', async () => {
    const bad = encodeCommand({ opcode: 0x99, param1: 0, param2: 0 });
    const hex = Buffer.from(bad).toString('hex');
    const raw = new EmulatedKit(testChip());
    await raw.handleLine('E:w()');
    expect(await raw.handleLine(`E:t(${hex})`)).toMatch(/^00\(0403/);
    const atca = new EmulatedKit(testChip(), { talkErrors: 'atca-status' });
    await atca.handleLine('E:w()');
    expect(await atca.handleLine(`E:t(${hex})`)).toBe('D2()');
  });

  it('answers every line with one reply line and never throws', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 600 }), async (line) => {
        const kit = new EmulatedKit(testChip());
        const reply = await kit.handleLine(line);
        expect(reply).not.toContain('\n');
        expect(reply).toMatch(/^(ECC608 TWI )?[0-9A-F]{2}\([0-9A-F]*\)$/);
      }),
      { numRuns: propertyRuns(500) },
    );
  });
});
