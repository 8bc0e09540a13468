/**
 * A node config in memory for integration tests: a fresh identity (`identity: null`, no files),
 * echo on, a secure-channel listener at `api`, nothing else; `extra` overrides any of it.
 */
export function memoryNodeConfig(name: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    tcpListeners: [],
    services: { echo: true, relay: false },
    relays: [],
    identity: null,
    secureChannel: { listener: true, address: 'api', authorities: [] },
    outlets: [],
    inlets: [],
    log: { level: 'silent' },
    ...extra,
  };
}
