/** keyhop's TCP framing (docs/protocols/tcp.md) for raw test peers: u32-BE length ‖ body. */
export function tcpFrame(body: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}
