import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import { isSigningSlot, keySlotsOf } from './atecc608-vault.js';
import type { Atecc608 } from './device.js';
import {
  buildConfigZone,
  describeSlot,
  type ParsedConfig,
  parseConfigZone,
  type SlotFields,
} from './protocol/config.js';

/**
 * keyhop's default configuration (docs/vaults/atecc608.md): slots 0-7 hold P-256 private keys that
 * sign external digests and do ECDH with clear output, generated inside the chip (GenKey allowed
 * after the data lock too, so keys can be replaced) and lockable one by one; slot 8 (416 B) and
 * slots 9-15 (72 B) are clear data anyone on the bus may read and write. Watchdog 1.3 s, clock
 * divider M0, I2C address unchanged, no IO protection key.
 */
export const KEY_SLOTS = [0, 1, 2, 3, 4, 5, 6, 7] as const;

const KEY_SLOT: SlotFields = {
  slotConfig: { externalSign: true, ecdhAllowed: true, isSecret: true, genKeyAllowed: true },
  keyConfig: { private: true, pubInfo: true, keyType: 'P256', lockable: true },
};

const DATA_SLOT: SlotFields = {
  slotConfig: { readKey: 0, writeConfig: 0 },
  keyConfig: { keyType: 'SHA', lockable: true },
};

/** Counter0/1 as shipped (cryptoauthlib's test configuration writes the same). */
const COUNTER_INITIAL = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00);

/** The default configuration for a chip whose current zone is `current` (bytes 0-15 and its address kept). */
export function keyhopConfigZone(current: Uint8Array): Uint8Array {
  const now = parseConfigZone(current);
  return buildConfigZone({
    bytes: current,
    i2cAddress: now.i2cAddress,
    countMatch: { raw: 0 },
    chipMode: { raw: 0 },
    slots: Array.from({ length: 16 }, (_, slot) => (slot < 8 ? KEY_SLOT : DATA_SLOT)),
    counters: [COUNTER_INITIAL, COUNTER_INITIAL],
    useLock: { raw: 0 },
    volatileKeyPermission: { raw: 0 },
    secureBoot: { raw: 0 },
    kdfIvLoc: 0,
    kdfIvStr: new Uint8Array(2),
    chipOptions: { raw: 0 },
    x509format: Array.from({ length: 4 }, () => ({ publicPosition: 0, templateLength: 0 })),
    configLocked: false,
    dataLocked: false,
  });
}

export type ProvisionStep =
  | { readonly kind: 'write-config' }
  | { readonly kind: 'lock-config' }
  | { readonly kind: 'genkey'; readonly slot: number }
  | { readonly kind: 'lock-data' };

export interface ProvisionPlan {
  /** `blank`: config unlocked; `config-locked`: data unlocked; `provisioned`: both locked. */
  readonly state: 'blank' | 'config-locked' | 'provisioned';
  readonly steps: readonly ProvisionStep[];
  /** Slots that will hold signing keys afterwards. */
  readonly signingSlots: readonly number[];
  /** Why the chip cannot be provisioned for keyhop, when it cannot. */
  readonly refusal?: string;
}

export function describeStep(step: ProvisionStep): string {
  switch (step.kind) {
    case 'write-config':
      return "write keyhop's configuration (slots 0-7 P-256 keys, 8-15 data)";
    case 'lock-config':
      return 'lock the configuration zone (IRREVERSIBLE)';
    case 'genkey':
      return `generate a P-256 key inside the chip in slot ${step.slot}`;
    case 'lock-data':
      return 'lock the data and OTP zones (IRREVERSIBLE)';
  }
}

export const isIrreversible = (s: ProvisionStep): boolean =>
  s.kind === 'lock-config' || s.kind === 'lock-data';

/** What provisioning would do to a chip in the state `cfg`; pure, so `--yes`-less runs show it. */
export function planProvisioning(cfg: ParsedConfig): ProvisionPlan {
  if (!cfg.configLocked) {
    return {
      state: 'blank',
      steps: [
        { kind: 'write-config' },
        { kind: 'lock-config' },
        ...KEY_SLOTS.map((slot) => ({ kind: 'genkey' as const, slot })),
        { kind: 'lock-data' },
      ],
      signingSlots: KEY_SLOTS,
    };
  }
  const signing = cfg.slots.filter(isSigningSlot).map((s) => s.slot);
  if (signing.length === 0) {
    const refusal =
      'the configuration zone is locked and no slot holds a P-256 private key that signs external digests ' +
      '(keyhop needs KeyConfig private+PubInfo+P256 without ReqAuth and SlotConfig IsSecret+external sign); ' +
      `slots: ${cfg.slots.map((s) => `${s.slot}: ${describeSlot(cfg, s.slot)}`).join('; ')}`;
    return { state: cfg.dataLocked ? 'provisioned' : 'config-locked', steps: [], signingSlots: [], refusal };
  }
  if (!cfg.dataLocked) {
    // Before the data lock GenKey works on every private-key slot, whatever SlotConfig bit 13 says.
    return {
      state: 'config-locked',
      steps: [...signing.map((slot) => ({ kind: 'genkey' as const, slot })), { kind: 'lock-data' }],
      signingSlots: signing,
    };
  }
  return { state: 'provisioned', steps: [], signingSlots: signing };
}

export interface ProvisionResult {
  readonly plan: ProvisionPlan;
  readonly applied: boolean;
  readonly serialNumber: Uint8Array;
  /** Public keys (X ‖ Y) of the signing slots, after provisioning. */
  readonly publicKeys: ReadonlyMap<number, Uint8Array>;
  /** Slots where the vault may generate keys later. */
  readonly keySlots: readonly number[];
}

/**
 * Provisions a chip for keyhop. Without `yes` nothing is written: the plan is returned for the
 * caller to show. A chip locked in a way keyhop cannot use is refused (PROVISION_REFUSED) before
 * anything happens. Re-running on a provisioned chip changes nothing.
 */
export async function provision(
  device: Atecc608,
  options: { yes: boolean; onStep?: (step: ProvisionStep) => void },
): Promise<ProvisionResult> {
  const zone = await device.readConfigZone();
  const cfg = parseConfigZone(zone);
  const plan = planProvisioning(cfg);
  if (plan.refusal) throw new KeyhopError(ErrorCodes.PROVISION_REFUSED, plan.refusal);
  const serialNumber = cfg.serialNumber;
  if (!options.yes && plan.steps.length > 0) {
    return { plan, applied: false, serialNumber, publicKeys: new Map(), keySlots: [] };
  }
  const publicKeys = new Map<number, Uint8Array>();
  for (const step of plan.steps) {
    options.onStep?.(step);
    switch (step.kind) {
      case 'write-config': {
        const desired = keyhopConfigZone(zone);
        await device.writeConfigZone(desired);
        break;
      }
      case 'lock-config': {
        // Lock with the summary CRC of what we mean to lock: if anything differs, the chip refuses.
        const written = await device.readConfigZone();
        const expected = keyhopConfigZone(zone);
        if (!sameConfig(written, expected)) {
          throw new KeyhopError(
            ErrorCodes.PROVISION_REFUSED,
            'the configuration read back differs from the one written; not locking it',
          );
        }
        await device.lockConfig(written);
        break;
      }
      case 'genkey':
        publicKeys.set(step.slot, await device.genKey(step.slot));
        break;
      case 'lock-data':
        await device.lockData();
        break;
    }
  }
  const after = await device.config();
  for (const slot of plan.signingSlots) {
    if (!publicKeys.has(slot)) publicKeys.set(slot, await device.publicKey(slot));
  }
  return { plan, applied: plan.steps.length > 0, serialNumber, publicKeys, keySlots: keySlotsOf(after) };
}

/** Bytes 0-15 (serial, revision) and 84-87 (UserExtra, lock bytes) are not ours to compare. */
function sameConfig(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 16; i < 128; i++) {
    if (i >= 84 && i <= 87) continue;
    if (a[i] !== b[i]) return false;
  }
  return true;
}
