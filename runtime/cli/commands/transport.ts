import type { Command } from 'commander';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { controlCall } from '../../node/control-client.js';
import { KeyhopNode } from '../../node/node.js';
import { keyhopHome, nodePaths } from '../../node/paths.js';
import { TransportType } from '../../routing/address.js';
import { Route } from '../../routing/route.js';
import { print } from '../output.js';

interface Common {
  home?: string;
  json?: boolean;
  at?: string;
  to?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerTransportCommands(program: Command): void {
  program
    .command('tcp-listener')
    .description('TCP listeners of a running node')
    .command('create')
    .description('start a TCP listener on a running node')
    .argument('<host:port>', 'address to listen on (port 0 = any free port)')
    .requiredOption('--at <node>', 'node name')
    .option(
      '--expose <address>',
      'worker reachable from this listener (repeatable; default: all services)',
      collect,
    )
    .option('--json', 'machine-readable output')
    .action(async (address: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { expose?: string[] }>();
      const control = nodePaths(keyhopHome(o.home), o.at!).control;
      const r = (await controlCall(control, 'tcpListener.create', {
        address,
        ...(o.expose ? { expose: o.expose } : {}),
      })) as { address: string };
      print(o, r, (d) => `listening on 1#${d.address}`);
    });

  program
    .command('relay')
    .description('relays that make a node reachable through another node')
    .command('create')
    .description('register a relay for node --to on the node at route --at')
    .argument('[alias]', 'stable relay name (forward_to_<alias>); random if omitted')
    .requiredOption(
      '--at <route>',
      'route to the node that runs the relay service, e.g. 1#relay.example:4000',
    )
    .requiredOption('--to <node>', 'local node the relay forwards to')
    .option(
      '--expose <address>',
      'worker reachable through the relay (repeatable; default: all services)',
      collect,
    )
    .option('--json', 'machine-readable output')
    .action(async (alias: string | undefined, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { expose?: string[] }>();
      const control = nodePaths(keyhopHome(o.home), o.to!).control;
      const r = (await controlCall(control, 'relay.create', {
        at: o.at,
        ...(alias ? { alias } : {}),
        ...(o.expose ? { expose: o.expose } : {}),
      })) as { name: string; route: string };
      print(o, r, (d) => `relay ${d.name} registered; reach node ${o.to} at ${d.route}`);
    });

  program
    .command('message')
    .description('send messages along routes')
    .command('send')
    .description('send a message along a route and print the answer')
    .argument('<payload>', 'message text (UTF-8)')
    .requiredOption('--to <route>', 'route, e.g. "1#127.0.0.1:4000 => echo"')
    .option('--from <node>', 'send from this running node (default: a temporary in-process node)')
    .option('--timeout <ms>', 'how long to wait for the answer', '10000')
    .option('--json', 'machine-readable output')
    .action(async (payload: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { from?: string; timeout: string }>();
      const timeoutMs = Number(o.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
        throw new KeyhopError(ErrorCodes.USAGE, '--timeout must be a positive number of ms');
      let reply: { payload: Buffer; returnRoute: string };
      if (o.from) {
        const control = nodePaths(keyhopHome(o.home), o.from).control;
        const r = (await controlCall(
          control,
          'message.send',
          { to: o.to, payload, timeoutMs },
          timeoutMs + 5000,
        )) as {
          payload: string;
          returnRoute: string;
        };
        reply = { payload: Buffer.from(r.payload, 'base64'), returnRoute: r.returnRoute };
      } else {
        // A UDP route needs a local socket to send from (and to hear the answer on).
        const head = Route.parse(o.to!).next!;
        if (head.isLocal) {
          throw new KeyhopError(
            ErrorCodes.USAGE,
            `the route starts at a local worker (${head}), but without --from the message leaves from a temporary node that runs none: start it with a transport address (1#host:port => …), or send --from a running node`,
          );
        }
        const udpBind =
          head.type === TransportType.UDP ? (head.text.startsWith('[') ? '[::]:0' : '0.0.0.0:0') : undefined;
        const node = await KeyhopNode.start({
          name: 'cli',
          tcpListeners: [],
          ...(udpBind ? { udp: { bind: udpBind, expose: [] } } : {}),
          services: { echo: false, relay: false },
          relays: [],
          log: { level: 'silent' },
        });
        try {
          const m = await node.request(o.to!, Buffer.from(payload, 'utf8'), timeoutMs);
          reply = { payload: Buffer.from(m.payload), returnRoute: m.returnRoute.toString() };
        } finally {
          await node.stop();
        }
      }
      print(
        o,
        {
          reply: reply.payload.toString('utf8'),
          replyBase64: reply.payload.toString('base64'),
          from: reply.returnRoute,
        },
        (d) => d.reply,
      );
    });
}
