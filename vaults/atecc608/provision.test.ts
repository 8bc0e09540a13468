import { p256 } from '@noble/curves/nist.js';
import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../runtime/errors.js';
import { Atecc608 } from './device.js';
import { Atecc608Chip } from './emulator/chip.js';
import { EmulatorLink } from './emulator/emulator-link.js';
import { testConfig } from './emulator/test-helpers.js';
import { describeSlot, parseConfigZone } from './protocol/config.js';
import { keyhopConfigZone, planProvisioning, provision } from './provision.js';

function freshChip(seed = 'provision') {
  const chip = new Atecc608Chip({ seed });
  return { chip, device: new Atecc608(new EmulatorLink(chip)) };
}

describe('keyhop default configuration', () => {
  it('makes slots 0-7 signing keys and 8-15 clear data, keeping serial, revision and address', async () => {
    const { device } = freshChip();
    const before = await device.readConfigZone();
    const zone = keyhopConfigZone(before);
    expect(zone.subarray(0, 17)).toEqual(before.subarray(0, 17));
    const cfg = parseConfigZone(zone);
    for (let slot = 0; slot < 8; slot++) {
      expect(describeSlot(cfg, slot)).toMatch(
        /^P256 private key: external sign, ECDH \(clear\), GenKey allowed/,
      );
    }
    expect(cfg.slots[0]!.keyConfig.lockable).toBe(true);
    expect(cfg.slots[8]!.keyConfig.private).toBe(false);
    expect(cfg.slots[8]!.slotConfig.isSecret).toBe(false);
    expect(cfg.chipMode.watchdogLong).toBe(false);
    expect(cfg.chipOptions.raw).toBe(0);
  });
});

describe('provisioning', () => {
  it('shows the plan and changes nothing without --yes', async () => {
    const { device } = freshChip();
    const before = await device.readConfigZone();
    const result = await provision(device, { yes: false });
    expect(result.applied).toBe(false);
    expect(result.plan.state).toBe('blank');
    expect(result.plan.steps.map((s) => s.kind)).toEqual([
      'write-config',
      'lock-config',
      ...Array(8).fill('genkey'),
      'lock-data',
    ]);
    expect(await device.readConfigZone()).toEqual(before);
  });

  it('provisions a blank chip: locked, keys generated, signatures verify independently', async () => {
    const { device } = freshChip();
    const steps: string[] = [];
    const result = await provision(device, { yes: true, onStep: (s) => steps.push(s.kind) });
    expect(result.applied).toBe(true);
    expect(steps).toHaveLength(11);
    const cfg = await device.config();
    expect(cfg.configLocked && cfg.dataLocked).toBe(true);
    expect(result.publicKeys.size).toBe(8);
    expect(result.keySlots).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const digest = new Uint8Array(32).fill(7);
    const sig = await device.sign(3, digest);
    const pub = Uint8Array.of(4, ...result.publicKeys.get(3)!);
    expect(p256.verify(sig, digest, pub, { prehash: false, lowS: false })).toBe(true);
    // Random is real now.
    expect(await device.random()).not.toEqual(new Uint8Array(32).fill(0xff));

    const again = await provision(device, { yes: true });
    expect(again.applied).toBe(false);
    expect(again.plan.state).toBe('provisioned');
    expect(again.publicKeys.get(3)).toEqual(result.publicKeys.get(3));
  });

  it('finishes a chip whose configuration was locked by someone else, if it has signing slots', async () => {
    const { chip, device } = freshChip();
    const zone = testConfig((await device.readConfigZone()).subarray(0, 16));
    await device.writeConfigZone(zone);
    await device.lockConfig(await device.readConfigZone());
    const plan = planProvisioning(await device.config());
    expect(plan.state).toBe('config-locked');
    // cryptoauthlib's test config: slots 0, 2 and 7 are P-256 private keys that sign external digests.
    expect(plan.signingSlots).toEqual([0, 2, 7]);
    const result = await provision(device, { yes: true });
    expect([...result.publicKeys.keys()]).toEqual([0, 2, 7]);
    expect(chip.exportImage().config).toBeDefined();
  });

  it('refuses a locked chip keyhop cannot sign with, before changing anything', async () => {
    const { device } = freshChip();
    const current = await device.readConfigZone();
    const zone = keyhopConfigZone(current);
    // Make every key slot a plain data slot, then lock that.
    for (let slot = 0; slot < 8; slot++) {
      zone[96 + slot * 2] = 0x3c;
      zone[96 + slot * 2 + 1] = 0x00;
    }
    await device.writeConfigZone(zone);
    await device.lockConfig(await device.readConfigZone());
    const err = await provision(device, { yes: true }).catch((e: unknown) => e);
    expect(isKeyhopError(err, 'PROVISION_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/no slot holds a P-256 private key/);
    expect((await device.config()).dataLocked).toBe(false);
  });
});
