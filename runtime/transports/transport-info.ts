/** Local info a transport attaches to every message it receives (never sent on the wire). */
export const TRANSPORT_INFO = 'keyhop.transport';

export interface TransportInfo {
  transport: string;
  /** Remote socket address, `host:port`. */
  peer: string;
  /** Local address of the sender worker that answers towards the peer. */
  sender: string;
}
