import type { Context } from '../routing/context.js';
import type { Message } from '../routing/message.js';
import type { Worker } from '../routing/worker.js';

/**
 * A worker that answers each request with what `answer` returns, along the request's return
 * route. Requests are handled concurrently, up to `concurrency` at once (then the mailbox waits),
 * so that the journal behind a service can commit many decisions with one write; `shutdown`
 * waits for those in flight before `close`.
 */
export function requestWorker(
  answer: (message: Message) => Promise<Uint8Array>,
  o: { concurrency?: number; close?: () => Promise<void> } = {},
): Worker {
  const inFlight = new Set<Promise<void>>();
  const concurrency = o.concurrency ?? 64;
  return {
    async handleMessage(ctx: Context, message: Message): Promise<void> {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      const p = answer(message)
        .then((bytes) => ctx.reply(message, bytes))
        .catch(() => undefined)
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    async shutdown() {
      await Promise.all(inFlight);
      await o.close?.();
    },
  };
}
