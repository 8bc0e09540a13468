/** keyhop's public API. */

export * from '../vaults/index.js';
export * from './channel/index.js';
export { BareReader, BareWriter, decodeBareString, encodeBareString } from './codec/bare.js';
export { CborReader, cborEncode } from './codec/cbor.js';
export { type ErrorCode, ErrorCodes, isKeyhopError, KeyhopError } from './errors.js';
export * from './identity/index.js';
export { createLogger, type Logger, silentLogger } from './log.js';
export { type NodeConfig, parseNodeConfig } from './node/config.js';
export { IdentityStore } from './node/identity-store.js';
export { KeyhopNode } from './node/node.js';
export {
  decodeBareTransportMessage,
  encodeBareTransportMessage,
} from './routing/codec/bare-transport-message.js';
export { decodeCborFrame, encodeCborFrame } from './routing/codec/cbor-frame.js';
export * from './routing/index.js';
export { ECHO_ADDRESS, EchoService } from './services/echo.js';
export * from './services/portal/index.js';
export { Relay } from './services/relay/relay.js';
export {
  FORWARDING_SERVICE,
  RELAY_PREFIX,
  RelayService,
  STATIC_FORWARDING_SERVICE,
} from './services/relay/relay-service.js';
export { createRemoteRelay, type RemoteRelayInfo } from './services/relay/remote-relay.js';
export { TcpConnection } from './transports/tcp/tcp-connection.js';
export { type TcpListener, TcpTransport } from './transports/tcp/tcp-transport.js';
export { TRANSPORT_INFO, type TransportInfo } from './transports/transport-info.js';
export {
  type UdpDropReason,
  UdpTransport,
  type UdpTransportOptions,
  type UdpTransportStats,
} from './transports/udp/udp-transport.js';
