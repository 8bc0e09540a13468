/** Local info a transport attaches to every message it receives (never sent on the wire). */
export const TRANSPORT_INFO = 'keyhop.transport';

export interface TransportInfo {
  transport: string;
  /** Remote socket address, `host:port`. */
  peer: string;
  /** Local address of the sender worker that answers towards the peer. */
  sender: string;
  /**
   * Called by a layer above once the peer has shown that it receives what this node sends to
   * this source (it echoed a handshake cookie sent there, or completed a handshake over it). A
   * transport whose source addresses can be forged (UDP) then stops counting the source against
   * the shared budget of unproven sources. Absent where the transport proves sources itself (TCP).
   */
  reachable?: () => void;
}
