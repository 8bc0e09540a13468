import { ErrorCodes, KeyhopError } from '../../../errors.js';
import type { AdvertiseOptions } from '../gatt-link.js';

/** Legacy advertising data and scan response are at most 31 bytes each (Core Vol 6 Part B 2.3.1). */
export const MAX_LEGACY_AD_BYTES = 31;

const AD_FLAGS = 0x01;
const AD_COMPLETE_128BIT_UUIDS = 0x07;
const AD_COMPLETE_LOCAL_NAME = 0x09;
const AD_MANUFACTURER_DATA = 0xff;
/** LE General Discoverable, BR/EDR not supported. */
const FLAGS_LE_ONLY_GENERAL = 0x06;

const UUID128 = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** noble and bleno spell UUIDs lowercase without dashes. */
export function toStackUuid(uuid: string): string {
  return uuid.toLowerCase().replaceAll('-', '');
}

/** Back to keyhop's spelling: 128-bit UUIDs with dashes; 16/32-bit ones stay short. */
export function fromStackUuid(uuid: string): string {
  const u = uuid.toLowerCase();
  if (u.length !== 32) return u;
  return `${u.slice(0, 8)}-${u.slice(8, 12)}-${u.slice(12, 16)}-${u.slice(16, 20)}-${u.slice(20)}`;
}

export interface AdvertisingPayload {
  /** Flags + complete list of 128-bit service UUIDs. */
  readonly advertisement: Buffer;
  /** Complete local name + manufacturer-specific data. */
  readonly scanResponse: Buffer;
}

/**
 * Builds the two legacy advertising payloads. The service UUID goes into the advertising data so
 * passive filters see it; name and manufacturer data go into the scan response (18 bytes of the
 * first 31 are taken by one 128-bit UUID). Throws ENCODE_LIMIT when either exceeds 31 bytes.
 */
export function buildAdvertisingPayload(options: AdvertiseOptions): AdvertisingPayload {
  const service = options.profile.service.toLowerCase();
  if (!UUID128.test(service)) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `BLE: service UUID "${service}" is not a 128-bit UUID`);
  }
  const uuidLe = Buffer.from(toStackUuid(service), 'hex').reverse();
  const advertisement = Buffer.concat([
    field(AD_FLAGS, Buffer.of(FLAGS_LE_ONLY_GENERAL)),
    field(AD_COMPLETE_128BIT_UUIDS, uuidLe),
  ]);

  const parts: Buffer[] = [];
  if (options.name.length > 0) parts.push(field(AD_COMPLETE_LOCAL_NAME, Buffer.from(options.name, 'utf8')));
  if (options.manufacturerData !== undefined) {
    if (options.manufacturerData.length < 2) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'BLE: manufacturer data must start with a 2-byte company identifier',
      );
    }
    parts.push(field(AD_MANUFACTURER_DATA, Buffer.from(options.manufacturerData)));
  }
  const scanResponse = Buffer.concat(parts);
  if (scanResponse.length > MAX_LEGACY_AD_BYTES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `BLE scan response would be ${scanResponse.length} bytes (name ${Buffer.byteLength(options.name)} + manufacturer data ${options.manufacturerData?.length ?? 0} + 2 bytes of header each); the limit is ${MAX_LEGACY_AD_BYTES}`,
    );
  }
  return { advertisement, scanResponse };
}

function field(type: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.of(data.length + 1, type), data]);
}
