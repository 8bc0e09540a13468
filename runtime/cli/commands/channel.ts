import { connect } from 'node:net';
import type { Command } from 'commander';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { controlCall } from '../../node/control-client.js';
import { keyhopHome, nodePaths } from '../../node/paths.js';
import { parseHostPort } from '../../transports/host-port.js';
import { print } from '../output.js';

interface Common {
  home?: string;
  json?: boolean;
  at: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const control = (o: { home?: string }, node: string) => nodePaths(keyhopHome(o.home), node).control;

export function registerChannelCommands(program: Command): void {
  const sc = program
    .command('secure-channel')
    .description('end-to-end encrypted, mutually authenticated channels');
  sc.command('create')
    .description('open a secure channel from a running node to a secure-channel listener')
    .requiredOption('--from <node>', 'node that initiates')
    .requiredOption('--to <route>', 'route to the listener, e.g. "1#127.0.0.1:4000 => api" or via a relay')
    .option('--authorized <identifier>', 'accept only this peer identifier (repeatable)', collect)
    .option(
      '--no-confirm',
      "report the channel open when the handshake is done, without the responder's acceptance (Ockam responders never send one)",
    )
    .option('--timeout <ms>', 'how long the handshake and the acceptance may take', '10000')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<
        Common & { from: string; to: string; authorized?: string[]; confirm: boolean; timeout: string }
      >();
      const timeoutMs = Number(o.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000)
        throw new KeyhopError(ErrorCodes.USAGE, '--timeout must be 1..600000 ms');
      const r = (await controlCall(
        control(o, o.from),
        'secureChannel.create',
        {
          to: o.to,
          timeoutMs,
          ...(o.authorized ? { authorized: o.authorized } : {}),
          ...(o.confirm === false ? { confirm: false } : {}),
        },
        timeoutMs + 5000,
      )) as { encryptor: string; peer: string };
      print(
        o,
        r,
        (d) => `${d.encryptor} (peer ${d.peer}); send through it with: --to "${d.encryptor} => <service>"`,
      );
    });
  sc.command('list')
    .description('secure channels of a running node')
    .requiredOption('--at <node>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const rows = (await controlCall(control(o, o.at), 'secureChannel.list')) as {
        encryptor: string;
        role: string;
        state: string;
        peer: string | null;
      }[];
      print(o, rows, (r) =>
        r.length
          ? r
              .map((c) => `${c.encryptor}  ${c.role.padEnd(9)} ${c.state.padEnd(9)} ${c.peer ?? '?'}`)
              .join('\n')
          : 'no secure channels',
      );
    });
  sc.command('delete')
    .description('close a secure channel (the peer is told)')
    .argument('<encryptor>', 'the channel encryptor address, as listed')
    .requiredOption('--at <node>', 'node name')
    .option('--json', 'machine-readable output')
    .action(async (encryptor: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      await controlCall(control(o, o.at), 'secureChannel.delete', { encryptor });
      print(o, { encryptor, deleted: true }, () => `closed ${encryptor}`);
    });

  program
    .command('tcp-outlet')
    .description('TCP portal outlets: expose a TCP service to secure-channel peers')
    .command('create')
    .description('forward portal connections that reach this node to host:port')
    .requiredOption('--at <node>', 'node name')
    .requiredOption('--to <host:port>', 'the TCP service')
    .option('--from <address>', 'outlet worker address', 'outlet')
    .option('--policy <expression>', 'ABAC policy the secure-channel peer must satisfy')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { to: string; from: string; policy?: string }>();
      const r = (await controlCall(control(o, o.at), 'outlet.create', {
        target: o.to,
        address: o.from,
        ...(o.policy ? { policy: o.policy } : {}),
      })) as { address: string };
      // The outlet exists now; whether its service answers is worth saying, not hiding.
      const reachable = await answers(o.to);
      print(o, { ...r, target: o.to, targetReachable: reachable }, (d) => `outlet ${d.address} -> ${o.to}`);
      if (!reachable && !o.json) {
        process.stderr.write(
          `keyhop: note: nothing answers at ${o.to} now; portal connections to it will fail until something listens there\n`,
        );
      }
    });

  program
    .command('tcp-inlet')
    .description('TCP portal inlets: a local port that leads to a remote outlet')
    .command('create')
    .description('listen on host:port; each connection travels through a secure channel to the outlet')
    .requiredOption('--at <node>', 'node name')
    .requiredOption('--from <host:port>', 'where to listen')
    .requiredOption(
      '--to <route>',
      'route to the outlet node\'s secure-channel listener, e.g. "1#relay:4000 => forward_to_b => api"',
    )
    .option('--outlet <address>', 'outlet address on that node', 'outlet')
    .option(
      '--authorized <identifier>',
      "accept only this identifier as the outlet's node (repeatable; required unless --trust-any-outlet)",
      collect,
    )
    .option('--trust-any-outlet', "accept any identity as the outlet's node (not recommended)")
    .option('--no-secure', 'treat --to as the plain route to the outlet (no secure channel)')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<
        Common & {
          from: string;
          to: string;
          outlet: string;
          secure: boolean;
          authorized?: string[];
          trustAnyOutlet?: boolean;
        }
      >();
      const r = (await controlCall(control(o, o.at), 'inlet.create', {
        bind: o.from,
        to: o.to,
        outlet: o.outlet,
        ...(o.secure === false ? { secure: false } : {}),
        ...(o.authorized ? { authorized: o.authorized } : {}),
        ...(o.trustAnyOutlet ? { trustAnyOutlet: true } : {}),
      })) as { address: string; channel: string | null };
      print(o, r, (d) => `inlet ${d.address}${d.channel ? ` through secure channel ${d.channel}` : ''}`);
    });
}

/** Whether a TCP connection to `hostPort` is accepted within a second (from this machine). */
function answers(hostPort: string): Promise<boolean> {
  const { host, port } = parseHostPort(hostPort, false);
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}
