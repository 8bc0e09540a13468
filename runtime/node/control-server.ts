import { chmod, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { AUTHORITY_OPS, authorityOp } from '../enrollment/authority-admin.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import type { AuthorityRunner } from './authority-runner.js';
import type { NodeBle } from './ble-node.js';
import { type ControlRequest, type ControlResponse, MAX_CONTROL_LINE } from './control-protocol.js';
import type { KeyhopNode } from './node.js';

type Handler = (params: Record<string, unknown>) => Promise<unknown>;

function str(params: Record<string, unknown>, key: string, required = true): string | undefined {
  const v = params[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0)
    throw new KeyhopError(ErrorCodes.USAGE, `"${key}" is required`);
  return v;
}

function strList(params: Record<string, unknown>, key: string): string[] | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw new KeyhopError(ErrorCodes.USAGE, `"${key}" must be a list of strings`);
  }
  return v as string[];
}

/** Serves the control API of one node on a Unix socket. */
function requireBle(node: KeyhopNode): NodeBle {
  if (node.ble === undefined)
    throw new KeyhopError(ErrorCodes.USAGE, 'this node has no BLE (add a "ble" section to its config)');
  return node.ble;
}

function requireAuthority(node: KeyhopNode): AuthorityRunner {
  if (node.authorityRunner === undefined)
    throw new KeyhopError(
      ErrorCodes.USAGE,
      'this node serves no authority (start it with --serve-authority <name>)',
    );
  return node.authorityRunner;
}

/** The route devices use to reach this node's secure-channel listener: its first TCP listener's. */
function defaultTicketRoute(node: KeyhopNode): string {
  const listener = node.tcp.listenerList()[0];
  const host = listener?.address.replace(/:\d+$/, '');
  if (!listener || host === '0.0.0.0' || host === '[::]' || host === '::') {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `give --route: the route devices use to reach this node (${listener ? `it listens on ${listener.address}, which is not an address to dial` : 'it has no TCP listener'})`,
    );
  }
  return `1#${listener.address} => ${node.config.secureChannel?.address ?? 'api'}`;
}

export class ControlServer {
  private readonly server: Server;
  private readonly handlers: Record<string, Handler>;

  private constructor(
    private readonly node: KeyhopNode,
    private readonly path: string,
    onStop: () => void,
  ) {
    this.handlers = {
      'node.show': async () => node.describe(),
      'node.stop': async () => {
        setImmediate(onStop);
        return { stopping: true };
      },
      // What the control API adds is recorded in the node's configuration (and so survives a
      // restart); secure channels and messages are not configuration.
      'tcpListener.create': async (p) => {
        const requested = str(p, 'address')!;
        const expose = strList(p, 'expose');
        const address = await node.createTcpListener(requested, expose);
        await node.recordConfig((c) =>
          c.tcpListeners.push({ address: requested, ...(expose ? { expose } : {}) }),
        );
        return { address };
      },
      'tcpListener.list': async () => node.tcp.listenerList().map((l) => ({ address: l.address })),
      'relay.create': async (p) => {
        const alias = str(p, 'alias', false);
        const expose = strList(p, 'expose');
        const config = { at: str(p, 'at')!, ...(alias ? { alias } : {}), ...(expose ? { expose } : {}) };
        const info = await node.createRelay(config);
        await node.recordConfig((c) => c.relays.push(config));
        return { name: info.name, route: info.route.toString() };
      },
      'secureChannel.create': async (p) => {
        const authorized = strList(p, 'authorized');
        if (p.confirm !== undefined && typeof p.confirm !== 'boolean')
          throw new KeyhopError(ErrorCodes.USAGE, 'confirm must be true or false');
        const timeoutMs = p.timeoutMs;
        if (
          timeoutMs !== undefined &&
          (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > 600_000)
        )
          throw new KeyhopError(ErrorCodes.USAGE, 'timeoutMs must be 1..600000');
        const channel = await node.createSecureChannel(str(p, 'to')!, authorized, {
          confirm: p.confirm !== false,
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        });
        return channel.describe();
      },
      'secureChannel.list': async () => node.channels.list().map((c) => c.describe()),
      'secureChannel.delete': async (p) => {
        await node.channels.close(str(p, 'encryptor')!);
        return { deleted: true };
      },
      'outlet.create': async (p) => {
        const address = str(p, 'address', false);
        const policy = str(p, 'policy', false);
        const config = {
          target: str(p, 'target')!,
          ...(address ? { address } : {}),
          ...(policy ? { policy } : {}),
        };
        const created = await node.createOutlet(config);
        await node.recordConfig((c) => {
          c.outlets = [...(c.outlets ?? []), config];
        });
        return { address: created };
      },
      'inlet.create': async (p) => {
        const outlet = str(p, 'outlet', false);
        const authorized = strList(p, 'authorized');
        const config = {
          bind: str(p, 'bind')!,
          to: str(p, 'to')!,
          ...(outlet ? { outlet } : {}),
          ...(p.secure === false ? { secure: false } : {}),
          ...(authorized ? { authorized } : {}),
          ...(p.trustAnyOutlet === true ? { trustAnyOutlet: true } : {}),
        };
        const created = await node.createInlet(config);
        await node.recordConfig((c) => {
          c.inlets = [...(c.inlets ?? []), config];
        });
        return created;
      },
      'ble.scan': async (p) => {
        const ms = typeof p.durationMs === 'number' ? Math.min(Math.max(p.durationMs, 100), 60_000) : 5000;
        return requireBle(node).scan(ms);
      },
      'ble.pair.start': async (p) => {
        const expect = str(p, 'expectIdentifier', false);
        return requireBle(node).startPairing(str(p, 'target')!, {
          ...(expect ? { expectIdentifier: expect } : {}),
          ...(typeof p.timeoutMs === 'number' ? { timeoutMs: p.timeoutMs } : {}),
        });
      },
      'ble.pair.confirm': async (p) => {
        if (typeof p.accepted !== 'boolean')
          throw new KeyhopError(ErrorCodes.USAGE, 'accepted must be true or false');
        return requireBle(node).confirmPairing(str(p, 'id')!, p.accepted);
      },
      'ble.paired': async () => ({ pairable: node.ble?.pairable ?? null, peers: requireBle(node).paired() }),
      'ble.pairable': async (p) => {
        if (typeof p.pairable !== 'boolean')
          throw new KeyhopError(ErrorCodes.USAGE, 'pairable must be true or false');
        requireBle(node).setPairable(p.pairable);
        return { pairable: p.pairable };
      },
      ...Object.fromEntries(
        AUTHORITY_OPS.map((op): [string, Handler] => [
          `authority.${op}`,
          async (p) => {
            const runner = requireAuthority(node);
            if (op === 'ticket.create' && p.route === undefined)
              p = { ...p, route: defaultTicketRoute(node) };
            const result = await authorityOp(runner.authority, op, p);
            // A revocation goes to the directories at once, not at the next round.
            if (op === 'revoke') return { ...(result as object), directories: await runner.publishNow() };
            return result;
          },
        ]),
      ),
      'credential.renew': async () => {
        const renew = node.trustKeeper?.renewNow;
        if (!renew)
          throw new KeyhopError(
            ErrorCodes.USAGE,
            "this node's identity is not enrolled with an authority (keyhop enroll)",
          );
        return renew();
      },
      'authority.publish': async () => ({ directories: await requireAuthority(node).publishNow() }),
      'message.send': async (p) => {
        const payload = Buffer.from(
          str(p, 'payload', false) ?? '',
          p.encoding === 'base64' ? 'base64' : 'utf8',
        );
        const timeoutMs = typeof p.timeoutMs === 'number' ? p.timeoutMs : 10_000;
        const reply = await node.request(str(p, 'to')!, payload, timeoutMs);
        return {
          payload: Buffer.from(reply.payload).toString('base64'),
          returnRoute: reply.returnRoute.toString(),
        };
      },
    };
    this.server = createServer((socket) => this.serve(socket));
  }

  static async start(node: KeyhopNode, path: string, onStop: () => void): Promise<ControlServer> {
    const s = new ControlServer(node, path, onStop);
    await unlink(path).catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', (e) =>
        reject(
          new KeyhopError(ErrorCodes.LISTEN_FAILED, `control socket ${path}: ${e.message}`, { cause: e }),
        ),
      );
      // Create the socket 0600 from the start (chmod after listen would leave a window).
      const umask = process.umask(0o177);
      s.server.listen(path, () => resolve());
      process.umask(umask);
    });
    await chmod(path, 0o600);
    return s;
  }

  private serve(socket: Socket): void {
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_CONTROL_LINE) {
        socket.destroy();
        return;
      }
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        void this.answer(line).then((r) => socket.write(`${JSON.stringify(r)}\n`));
      }
    });
  }

  private async answer(line: string): Promise<ControlResponse> {
    let id = 0;
    try {
      const req = JSON.parse(line) as ControlRequest;
      id = typeof req.id === 'number' ? req.id : 0;
      const handler = typeof req.method === 'string' ? this.handlers[req.method] : undefined;
      if (!handler)
        throw new KeyhopError(ErrorCodes.USAGE, `unknown control method ${JSON.stringify(req.method)}`);
      const params = typeof req.params === 'object' && req.params !== null ? req.params : {};
      return { id, ok: true, result: await handler(params) };
    } catch (e) {
      const code = isKeyhopError(e) ? e.code : ErrorCodes.CONTROL_FAILED;
      const message = describeError(e);
      this.node.log.debug({ code, err: message }, 'control request failed');
      return { id, ok: false, error: { code, message } };
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await unlink(this.path).catch(() => undefined);
  }
}
