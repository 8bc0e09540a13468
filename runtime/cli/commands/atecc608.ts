import type { Command } from 'commander';
import { Atecc608, modelOf } from '../../../vaults/atecc608/device.js';
import { type AteccLinkSpec, describeLinkSpec, openAteccLink } from '../../../vaults/atecc608/link-spec.js';
import { describeSlot, parseConfigZone } from '../../../vaults/atecc608/protocol/config.js';
import { describeStep, isIrreversible, provision } from '../../../vaults/atecc608/provision.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { IdentityStore } from '../../node/identity-store.js';
import { keyhopHome } from '../../node/paths.js';
import { readDescriptor, vaultBackend, writeDescriptor } from '../../node/vault-registry.js';
import { addLinkOptions, type LinkOptions, linkSpecFrom } from '../atecc608-link-options.js';
import { print } from '../output.js';

interface Common extends LinkOptions {
  home?: string;
  json?: boolean;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

async function withDevice<T>(spec: AteccLinkSpec, fn: (device: Atecc608) => Promise<T>): Promise<T> {
  const link = await openAteccLink(spec);
  try {
    return await fn(new Atecc608(link));
  } finally {
    await link.close().catch(() => undefined);
  }
}

export function registerAtecc608Commands(program: Command): void {
  const chip = program
    .command('atecc608')
    .description('Microchip ATECC608 secure elements: inspect and provision (docs/vaults/atecc608.md)');

  addLinkOptions(chip.command('info'))
    .description('serial number, revision, lock state and what each slot is configured for')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const spec = linkSpecFrom(o);
      const data = await withDevice(spec, async (device) => {
        const info = await device.info();
        const cfg = parseConfigZone(await device.readConfigZone());
        return {
          link: describeLinkSpec(spec),
          serialNumber: hex(cfg.serialNumber),
          revision: hex(info.revision),
          model: modelOf(info.revision),
          i2cAddress: `0x${cfg.i2cAddress.toString(16)}`,
          configLocked: cfg.configLocked,
          dataLocked: cfg.dataLocked,
          slots: cfg.slots.map((s) => ({
            slot: s.slot,
            locked: s.locked,
            description: describeSlot(cfg, s.slot),
          })),
        };
      });
      print(o, data, (d) =>
        [
          `ATECC${d.model} at ${d.link}`,
          `  serial number ${d.serialNumber}, revision ${d.revision}, I2C address ${d.i2cAddress}`,
          `  config zone ${d.configLocked ? 'locked' : 'UNLOCKED'}, data zone ${d.dataLocked ? 'locked' : 'UNLOCKED'}`,
          ...d.slots.map(
            (s) =>
              `  slot ${String(s.slot).padStart(2)}: ${s.description}${s.locked ? ' [slot locked]' : ''}`,
          ),
        ].join('\n'),
      );
    });

  addLinkOptions(chip.command('provision'))
    .description(
      'configure, lock and generate keys on a chip for keyhop; shows what it would do unless --yes (locks are irreversible)',
    )
    .option('--yes', 'really do it, including the irreversible locks')
    .option('--vault <name>', 'also record the chip as this vault in KEYHOP_HOME')
    .option(
      '--identity <name>',
      "also create an identity whose primary key is the chip's slot 0 key (needs --vault)",
    )
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { yes?: boolean; vault?: string; identity?: string }>();
      if (o.identity && !o.vault) throw new KeyhopError(ErrorCodes.USAGE, '--identity needs --vault');
      const spec = linkSpecFrom(o);
      const result = await withDevice(spec, (device) =>
        provision(device, {
          yes: o.yes === true,
          onStep: (step) => {
            if (!o.json) process.stderr.write(`  ${describeStep(step)}...\n`);
          },
        }),
      );
      if (!result.applied && result.plan.steps.length > 0) {
        const data = {
          applied: false,
          state: result.plan.state,
          serialNumber: hex(result.serialNumber),
          steps: result.plan.steps.map(describeStep),
        };
        print(o, data, (d) =>
          [
            `chip ${d.serialNumber} at ${describeLinkSpec(spec)} is ${d.state}; provisioning would:`,
            ...result.plan.steps.map(
              (s, i) => `  ${i + 1}. ${describeStep(s)}${isIrreversible(s) ? ' <-' : ''}`,
            ),
            'nothing was changed: run again with --yes to do this',
          ].join('\n'),
        );
        return;
      }
      let identifier: string | undefined;
      if (o.vault) {
        const home = keyhopHome(o.home);
        const backend = await vaultBackend(home, o.vault);
        if (backend !== undefined && backend !== 'atecc608') {
          throw new KeyhopError(
            ErrorCodes.VAULT_EXISTS,
            `vault "${o.vault}" exists and is a ${backend} vault`,
          );
        }
        const existing = await readDescriptor(home, o.vault);
        // The identity takes the first signing slot's key, unless another key of this vault already
        // uses it; then the vault picks a free slot (a new GenKey).
        const keys = existing?.backend === 'atecc608' ? { ...existing.keys } : {};
        const first = result.plan.signingSlots[0]!;
        const firstKey = result.publicKeys.get(first);
        let keyId: string | undefined;
        if (o.identity && firstKey && keys[`slot${first}`] === undefined) {
          keyId = `slot${first}`;
          keys[keyId] = { slot: first, publicKey: hex(firstKey) };
        }
        await writeDescriptor(home, o.vault, { version: 1, backend: 'atecc608', link: spec, keys });
        if (o.identity) {
          const store = new IdentityStore(home);
          try {
            const created = await store.create(o.identity, {
              vault: o.vault,
              ...(keyId ? { keyId } : {}),
            });
            identifier = created.file.identifier;
          } finally {
            await store.close();
          }
        }
      }
      const data = {
        applied: result.applied,
        state: result.applied ? 'provisioned' : result.plan.state,
        serialNumber: hex(result.serialNumber),
        publicKeys: Object.fromEntries(
          [...result.publicKeys].map(([slot, key]) => [`slot${slot}`, `04${hex(key)}`]),
        ),
        keySlots: result.keySlots,
        ...(o.vault ? { vault: o.vault } : {}),
        ...(identifier ? { identity: o.identity, identifier } : {}),
      };
      print(o, data, (d) =>
        [
          `chip ${d.serialNumber}: ${d.applied ? 'provisioned' : 'already provisioned, nothing changed'}`,
          ...Object.entries(d.publicKeys).map(([slot, key]) => `  ${slot.padEnd(6)} P-256 ${key}`),
          ...(d.vault ? [`  recorded as vault ${d.vault}`] : []),
          ...(identifier ? [`  identity ${o.identity}: ${identifier}`] : []),
        ].join('\n'),
      );
    });
}
