/**
 * What a keyhop device puts in its scan response's manufacturer-specific data, so a gateway can
 * list unpaired devices and match a label before connecting (docs/protocols/ble.md):
 *
 *   ff ff | 6b 68 ("kh") | version 01 | flags | identifier hint (4 bytes)
 *
 * Company identifier 0xFFFF is the Bluetooth SIG's value for tests and internal use; a product
 * shipping in volume should use its own assigned identifier. Flag bit 0: pairable (no gateway yet,
 * or pairing re-opened on the device). The hint is the first 4 bytes of the device's identifier:
 * only a filter, never trusted (the secure channel authenticates the full identifier).
 */

export const KEYHOP_COMPANY_ID = 0xffff;
const MAGIC = [0x6b, 0x68] as const;
const VERSION = 1;
const LENGTH = 10;
export const FLAG_PAIRABLE = 0x01;

export interface DeviceAdvertisement {
  pairable: boolean;
  /** 8 hex characters: the start of the device's identifier (after the leading "I"). */
  identifierHint: string;
}

export function encodeDeviceAdvertisement(identifier: string, pairable: boolean): Uint8Array {
  const hint = Buffer.from(identifier.slice(1, 9), 'hex');
  const out = new Uint8Array(LENGTH);
  out[0] = KEYHOP_COMPANY_ID & 0xff;
  out[1] = KEYHOP_COMPANY_ID >> 8;
  out[2] = MAGIC[0];
  out[3] = MAGIC[1];
  out[4] = VERSION;
  out[5] = pairable ? FLAG_PAIRABLE : 0;
  out.set(hint.subarray(0, 4), 6);
  return out;
}

/** Undefined unless `data` is keyhop's manufacturer data (any later version is read as v1). */
export function parseDeviceAdvertisement(data: Uint8Array | undefined): DeviceAdvertisement | undefined {
  if (data === undefined || data.length < LENGTH) return undefined;
  if (data[0] !== (KEYHOP_COMPANY_ID & 0xff) || data[1] !== KEYHOP_COMPANY_ID >> 8) return undefined;
  if (data[2] !== MAGIC[0] || data[3] !== MAGIC[1] || data[4]! < VERSION) return undefined;
  return {
    pairable: (data[5]! & FLAG_PAIRABLE) !== 0,
    identifierHint: Buffer.from(data.subarray(6, 10)).toString('hex'),
  };
}
