#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registerAtecc608Commands } from './commands/atecc608.js';
import { registerAtecc608EmulatorCommand } from './commands/atecc608-emulator.js';
import { registerChannelCommands } from './commands/channel.js';
import { closeIdentityStores, registerIdentityCommands } from './commands/identity.js';
import { registerNodeCommands } from './commands/node.js';
import { registerPairCommands } from './commands/pair.js';
import { registerTransportCommands } from './commands/transport.js';
import { runDemo } from './demo.js';
import { reportError } from './output.js';

// A closed pipe (`keyhop demo | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

const program = new Command('keyhop')
  .description('keyhop: end-to-end secure messaging over any mix of transports')
  .version('0.1.0')
  .option('--home <dir>', 'state directory (default: $KEYHOP_HOME or ~/.keyhop)')
  .exitOverride();

registerNodeCommands(program);
registerTransportCommands(program);
registerIdentityCommands(program);
registerChannelCommands(program);
registerPairCommands(program);
registerAtecc608Commands(program);
registerAtecc608EmulatorCommand(program);

program
  .command('demo')
  .description('start a relay node and two nodes behind it, and send messages both ways through the relay')
  .action(async () => {
    await runDemo();
  });

/** Usage errors keep the one-line promise too: `keyhop: error [USAGE]: …`, naming the command's help. */
function oneLineUsageErrors(cmd: Command, path: string): void {
  cmd.exitOverride();
  cmd.configureOutput({
    outputError: (text, write) =>
      write(
        `keyhop: error [USAGE]: ${text
          .replace(/^error: /, '')
          .replace(/\s*\n\s*/g, ' ')
          .trim()} (${path} --help shows the usage)\n`,
      ),
  });
  for (const sub of cmd.commands) oneLineUsageErrors(sub, `${path} ${sub.name()}`);
}
oneLineUsageErrors(program, 'keyhop');

try {
  await program.parseAsync(process.argv);
  await closeIdentityStores();
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander already printed the message; help and version are not failures.
    process.exit(e.exitCode === 0 ? 0 : 2);
  }
  reportError(e);
}
