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
export { encodeDeviceAdvertisement, parseDeviceAdvertisement } from './pairing/advertisement.js';
export { DevicePairing, type PairingRequest, pairedPeersOnly } from './pairing/device.js';
export { DeviceForwarder } from './pairing/device-forwarder.js';
export { type DeviceCandidate, type PairingResult, pairDevice } from './pairing/gateway.js';
export { type PairedPeer, PairedStore } from './pairing/paired-store.js';
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
export {
  BLE,
  BlePeer,
  BleTransport,
  type BleTransportOptions,
  parseBleAddress,
} from './transports/ble/ble-transport.js';
export {
  type BleAdvertisement,
  type BleCentral,
  type BlePeripheral,
  type GattLink,
  type GattProfile,
  KEYHOP_PROFILE,
  NUS_PROFILE,
} from './transports/ble/gatt-link.js';
export { createCentral, createPeripheral } from './transports/ble/hci/index.js';
export { type EmbeddedBroker, startEmbeddedBroker } from './transports/mqtt/embedded-broker.js';
export {
  MqttConnection,
  type MqttConnectionOptions,
  type MqttConnectionStats,
  type MqttDropReason,
} from './transports/mqtt/mqtt-connection.js';
export { MqttTransport } from './transports/mqtt/mqtt-transport.js';
export { TcpConnection } from './transports/tcp/tcp-connection.js';
export { type TcpListener, TcpTransport } from './transports/tcp/tcp-transport.js';
export { TRANSPORT_INFO, type TransportInfo } from './transports/transport-info.js';
export {
  type UdpDropReason,
  UdpTransport,
  type UdpTransportOptions,
  type UdpTransportStats,
} from './transports/udp/udp-transport.js';
