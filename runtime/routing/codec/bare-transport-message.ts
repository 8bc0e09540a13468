import { BareReader, BareWriter } from '../../codec/bare.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Address, MAX_ADDRESS_VALUE_BYTES } from '../address.js';
import { Message } from '../message.js';
import { MAX_ROUTE_LENGTH, Route } from '../route.js';
import { MAX_MESSAGE_BYTES, MAX_TRACING_CHARS } from './limits.js';

/**
 * Ockam's BARE TransportMessage (ockam_core/src/routing/message/transport_message.rs): the frame
 * body before June 2024 and still the body on BLE, WebSocket and UDS.
 *
 *   u8 version (1, or 2 = with tracing) | route onward | route return | uleb len + payload
 *   [| u8 has_tracing (0/1) [| uleb len + UTF-8 tracing]]
 *   route = uleb count, then per address: u8 type | uleb len | bytes
 */
export interface BareEncodeOptions {
  /**
   * `elixir` (default) writes nothing after the payload, as Elixir does for version 1; `rust`
   * appends the has-tracing flag `00` as Rust's encoder always does. Both decode everywhere.
   */
  style?: 'elixir' | 'rust';
}

export function encodeBareTransportMessage(message: Message, options: BareEncodeOptions = {}): Uint8Array {
  if (message.payload.length > MAX_MESSAGE_BYTES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `payload of ${message.payload.length} bytes exceeds 16 MiB`,
    );
  }
  const w = new BareWriter().u8(1);
  writeRoute(w, message.onward);
  writeRoute(w, message.returnRoute);
  w.bytesValue(message.payload);
  if (options.style === 'rust') w.u8(0);
  return w.finish();
}

function writeRoute(w: BareWriter, route: Route): void {
  w.uleb(route.length);
  for (const a of route.addresses) w.u8(a.type).bytesValue(a.value);
}

export interface DecodedBareMessage {
  message: Message;
  version: number;
  tracing: string | undefined;
}

export function decodeBareTransportMessage(
  bytes: Uint8Array,
  maxPayload: number = MAX_MESSAGE_BYTES,
): DecodedBareMessage {
  const r = new BareReader(bytes, 'BARE transport message');
  const version = r.u8();
  if (version !== 1 && version !== 2) {
    throw new KeyhopError(ErrorCodes.DECODE_VERSION, `BARE transport message: unknown version ${version}`);
  }
  const onward = readRoute(r);
  const ret = readRoute(r);
  const payload = r.bytesValue(maxPayload);
  let tracing: string | undefined;
  // Version 1 may end here (Elixir) or carry the flag (Rust); version 2 must carry it.
  if (r.remaining > 0 || version === 2) {
    const flag = r.u8();
    if (flag === 1) tracing = r.string(MAX_TRACING_CHARS);
    else if (flag !== 0) r.fail(`has-tracing flag must be 0 or 1, got ${flag}`);
  }
  r.end();
  return { message: new Message(onward, ret, payload), version, tracing };
}

function readRoute(r: BareReader): Route {
  const n = r.uleb(MAX_ROUTE_LENGTH);
  const addresses: Address[] = [];
  for (let i = 0; i < n; i++) {
    const type = r.u8();
    addresses.push(new Address(type, r.bytesValue(MAX_ADDRESS_VALUE_BYTES)));
  }
  return Route.from(addresses);
}
