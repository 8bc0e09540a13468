/**
 * The local control API between the CLI and a node: one JSON object per line over a Unix socket
 * in the node's directory (mode 0600, so only its owner can drive the node).
 *
 *   request  {"id": 1, "method": "relay.create", "params": {...}}
 *   response {"id": 1, "ok": true, "result": ...} | {"id": 1, "ok": false, "error": {"code", "message"}}
 */
export interface ControlRequest {
  id: number;
  method: string;
  params?: Record<string, unknown>;
}

export type ControlResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: string; message: string } };

/** A control line longer than this is refused (the socket is closed). */
export const MAX_CONTROL_LINE = 1024 * 1024;
