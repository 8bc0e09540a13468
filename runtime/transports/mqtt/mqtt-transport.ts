import { ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { type Address, TransportType } from '../../routing/address.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { mailboxAddress, parseMailboxAddress } from './mailbox-address.js';
import { MqttConnection, type MqttConnectionOptions } from './mqtt-connection.js';

export interface MqttTransportOptions {
  log?: Logger;
}

/**
 * Mailboxes on MQTT brokers as a transport: `7#<broker>/<mailbox>` resolves, through this node's
 * connection to that broker, to the sender worker for that mailbox. A broker is named by its
 * connection's `broker` option or by the host:port of any of its URLs. This node never connects
 * to a broker it was not configured for (a route from a peer cannot make it dial one).
 */
export class MqttTransport implements Transport {
  readonly type = TransportType.MQTT;
  readonly name = 'mqtt';
  private readonly log: Logger;
  private readonly list: MqttConnection[] = [];
  /** Who may receive from which remote mailbox, kept from a closed connection for the next one of its mailbox. */
  private readonly admitted = new Map<string, Map<string, string[]>>();
  private stopped = false;

  private constructor(
    private readonly router: Router,
    options: MqttTransportOptions,
  ) {
    this.log = (options.log ?? router.log ?? silentLogger).child({ transport: 'mqtt' });
  }

  static create(router: Router, options: MqttTransportOptions = {}): MqttTransport {
    const t = new MqttTransport(router, options);
    router.registerTransport(t);
    return t;
  }

  /** Opens a mailbox on a broker (see MqttConnectionOptions). */
  async connect(options: Omit<MqttConnectionOptions, 'log'> & { log?: Logger }): Promise<MqttConnection> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'MQTT transport is stopped');
    const c = await MqttConnection.open(this.router, { ...options, log: options.log ?? this.log });
    if (this.list.some((o) => o.broker === c.broker && o.mailbox === c.mailbox)) {
      await c.close();
      throw new KeyhopError(ErrorCodes.ADDRESS_IN_USE, `mailbox ${c.address} is already open on this node`);
    }
    this.list.push(c);
    // Workers that talked to other mailboxes through this one before it was closed may still hear
    // back from them (a closed and reopened mailbox keeps its peers' reply paths).
    const key = `${c.broker}/${c.mailbox}`;
    const before = this.admitted.get(key);
    if (before) {
      this.admitted.delete(key);
      await c.readmit(before);
    }
    return c;
  }

  async resolve(address: Address): Promise<Address> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'MQTT transport is stopped');
    const { broker, mailbox } = parseMailboxAddress(address);
    const c = this.connectionFor(broker);
    if (!c) {
      throw new KeyhopError(
        ErrorCodes.CONNECT_FAILED,
        `${address}: this node has no connection to MQTT broker "${broker}" (configure one; nodes never dial brokers named by a route)`,
      );
    }
    return c.senderFor(mailbox);
  }

  portableAddress(local: Address): Address | undefined {
    for (const c of this.list) {
      const remote = c.mailboxOfSender(local);
      if (remote !== undefined) return mailboxAddress(c.broker, remote);
    }
    return undefined;
  }

  async admit(address: Address, local: Address): Promise<void> {
    const { broker, mailbox } = parseMailboxAddress(address);
    const c = this.connectionFor(broker);
    if (!c) {
      throw new KeyhopError(
        ErrorCodes.CONNECT_FAILED,
        `${address}: this node has no connection to MQTT broker "${broker}"`,
      );
    }
    await c.admit(mailbox, local);
  }

  /** The first connection to `broker` (by name, or host:port of one of its URLs). */
  connectionFor(broker: string): MqttConnection | undefined {
    return this.list.find((c) => c.broker === broker) ?? this.list.find((c) => c.hostPorts.includes(broker));
  }

  connections(): MqttConnection[] {
    return [...this.list];
  }

  async close(connection: MqttConnection): Promise<void> {
    const i = this.list.indexOf(connection);
    if (i >= 0) this.list.splice(i, 1);
    this.admitted.set(`${connection.broker}/${connection.mailbox}`, connection.admissions());
    await connection.close();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    const all = this.list.splice(0);
    await Promise.all(all.map((c) => c.close()));
  }
}
