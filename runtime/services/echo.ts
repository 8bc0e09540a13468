import type { Context } from '../routing/context.js';
import type { Message } from '../routing/message.js';
import type { Worker } from '../routing/worker.js';

export const ECHO_ADDRESS = 'echo';

/** Answers every message with its own payload, along its return route. */
export class EchoService implements Worker {
  async handleMessage(ctx: Context, message: Message): Promise<void> {
    await ctx.reply(message, message.payload);
  }
}
