export { TcpInlet, type TcpInletOptions } from './inlet.js';
export { DEFAULT_OUTLET_ADDRESS, TcpOutlet, type TcpOutletOptions } from './outlet.js';
export type { PortalStats, PortalTuning } from './portal-connection.js';
export {
  decodePortalMessage,
  encodeFlowMessage,
  encodePayload,
  encodePortalMessage,
  type FlowMessage,
  PORTAL_DEFAULT_CHUNK,
  PORTAL_MAX_PAYLOAD,
  PORTAL_MAX_RECEIVED_PAYLOAD,
  PORTAL_MIN_WINDOW,
  type PortalEncodeOptions,
  type PortalMessage,
  PortalTag,
} from './portal-message.js';
