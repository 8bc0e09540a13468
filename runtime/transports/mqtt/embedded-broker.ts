import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { formatHostPort, parseHostPort } from '../host-port.js';

export interface EmbeddedBroker {
  /** `mqtt://host:port` to give MqttConnection. */
  readonly url: string;
  /** The bound host:port (the real port when 0 was asked for). */
  readonly address: string;
  /** Clients connected now. */
  readonly clients: number;
  close(): Promise<void>;
}

/**
 * An in-process MQTT 3.1.1 broker (aedes) for the single-machine story: nothing to install.
 * Its sessions and queued messages live in memory and end with the process (keyhop's own
 * outbox, with a state directory, is what survives a restart). Binds to loopback unless told
 * otherwise; it has no authentication, so expose it on a network only behind something that has.
 */
export async function startEmbeddedBroker(
  bind = '127.0.0.1:1883',
  options: { log?: Logger } = {},
): Promise<EmbeddedBroker> {
  const log = (options.log ?? silentLogger).child({ component: 'mqtt-broker' });
  const { host, port } = parseHostPort(bind, true);
  const broker = await Aedes.createBroker();
  broker.on('clientError', (client, e) =>
    log.debug({ client: client?.id, err: e.message }, 'MQTT client error'),
  );
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => {
      broker.close();
      reject(
        new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot listen on ${bind}: ${describeError(e)}`, {
          cause: e,
        }),
      );
    });
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? formatHostPort(a.address, a.port) : bind;
  log.info({ address }, 'embedded MQTT broker listening');
  let closed = false;
  return {
    url: `mqtt://${address}`,
    address,
    get clients() {
      return broker.connectedClients;
    },
    async close() {
      if (closed) return;
      closed = true;
      // The broker first: it ends its clients' sockets, which server.close waits for.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
