import { decodeBareString, encodeBareString } from '../../codec/bare.js';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import type { Address } from '../../routing/address.js';
import { Route, type RouteLike, toRoute } from '../../routing/route.js';
import type { Router } from '../../routing/router.js';
import { FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE } from './relay-service.js';

/**
 * A local worker a relay forwards through. The relay keeps the registration's return route minus
 * its last hop, so registering with the return route [via, context] makes it forward to
 * [this node, via, …]. Its answer comes back the same way: while registering, `admit` lets the
 * worker hand messages for the registering context (and only those) to it.
 */
export interface RelayVia {
  readonly address: Address;
  admit(context: Address): () => void;
}

export interface RemoteRelayInfo {
  /** The relay's worker name on the remote node, e.g. `forward_to_b`. */
  name: string;
  /** Route to the remote node, as given. */
  node: Route;
  /** Route others use to reach this node through the relay: node route + relay name. */
  route: Route;
}

/**
 * Registers a relay for this node on the node at `node` (e.g. `1#relay.example:4000`). With an
 * alias the relay gets a stable name (`forward_to_<alias>`); without, a random one.
 */
export async function createRemoteRelay(
  router: Router,
  node: RouteLike,
  options: {
    alias?: string;
    timeoutMs?: number;
    /** A local worker that relayed messages pass through (e.g. a forwarder to a BLE device). */
    via?: RelayVia;
  } = {},
): Promise<RemoteRelayInfo> {
  const nodeRoute = toRoute(node);
  const ctx = await router.context();
  const release = options.via?.admit(ctx.address);
  try {
    const service = options.alias === undefined ? FORWARDING_SERVICE : STATIC_FORWARDING_SERVICE;
    await ctx.send(
      nodeRoute.append(service),
      encodeBareString(options.alias ?? 'register'),
      options.via === undefined ? {} : { returnRoute: Route.of(options.via.address, ctx.address) },
    );
    const answer = await ctx.receive(options.timeoutMs ?? 10_000).catch((e: unknown) => {
      throw new KeyhopError(
        ErrorCodes.RELAY_REJECTED,
        `no answer from a relay service at ${nodeRoute} within ${options.timeoutMs ?? 10_000} ms: does that node run one (--relay-service), exposed to this connection, and does it let this node register (a relay node with --relay-authority answers only registrations made through a secure channel by holders of an ockam-relay credential: --relay-secure)? (${describeError(e)})`,
      );
    });
    const name = decodeBareString(answer.payload, 256);
    if (options.alias !== undefined && !name.endsWith(options.alias)) {
      throw new KeyhopError(
        ErrorCodes.RELAY_REJECTED,
        `relay answered with name "${name}", not for "${options.alias}"`,
      );
    }
    return { name, node: nodeRoute, route: nodeRoute.append(name) };
  } finally {
    release?.();
    await ctx.stop();
  }
}
