import { Command } from 'commander';
import { registerAtecc608Commands } from './commands/atecc608.js';
import { registerAtecc608EmulatorCommand } from './commands/atecc608-emulator.js';
import { registerAuthorityCommands } from './commands/authority.js';
import { registerChannelCommands } from './commands/channel.js';
import { registerEnrollCommand } from './commands/enroll.js';
import { registerIdentityCommands } from './commands/identity.js';
import { registerNodeCommands } from './commands/node.js';
import { registerPairCommands } from './commands/pair.js';
import { registerTransportCommands } from './commands/transport.js';
import { runDemo } from './demo.js';

/** The whole `keyhop` command tree (what main.ts parses, and what docs/cli.md's reference lists). */
export function buildProgram(): Command {
  const program = new Command('keyhop')
    .description('keyhop: end-to-end secure messaging over any mix of transports')
    .version('0.1.0')
    .option('--home <dir>', 'state directory (default: $KEYHOP_HOME or ~/.keyhop)');

  registerNodeCommands(program);
  registerTransportCommands(program);
  registerIdentityCommands(program);
  registerChannelCommands(program);
  registerAuthorityCommands(program);
  registerEnrollCommand(program);
  registerPairCommands(program);
  registerAtecc608Commands(program);
  registerAtecc608EmulatorCommand(program);

  program
    .command('demo')
    .description('start a relay node and two nodes behind it, and send messages both ways through the relay')
    .action(async () => {
      await runDemo();
    });

  oneLineUsageErrors(program, 'keyhop');
  return program;
}

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

/** Every command that does something (has an action), with its full path, depth first. */
export function commandsOf(program: Command): { path: string; command: Command }[] {
  const out: { path: string; command: Command }[] = [];
  const walk = (cmd: Command, path: string) => {
    for (const sub of cmd.commands) {
      const p = `${path} ${sub.name()}`;
      if (sub.commands.length === 0) out.push({ path: p, command: sub });
      else {
        // A group that is also a command of its own (e.g. `keyhop pair`).
        if ((sub as unknown as { _actionHandler?: unknown })._actionHandler)
          out.push({ path: p, command: sub });
        walk(sub, p);
      }
    }
  };
  walk(program, program.name());
  return out;
}

/**
 * The command reference of docs/cli.md, made from the commands themselves, so that the document
 * and `--help` cannot disagree (runtime/cli/reference.test.ts checks the document holds exactly
 * this; `npm run docs:cli` writes it).
 */
export function cliReference(program: Command): string {
  const lines: string[] = [];
  for (const { path, command } of commandsOf(program)) {
    const args = command.registeredArguments
      .map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`))
      .join(' ');
    lines.push(`### \`${path}${args ? ` ${args}` : ''}\``, '', command.description(), '');
    for (const a of command.registeredArguments) {
      const d = a.defaultValue === undefined ? '' : ` (default: \`${String(a.defaultValue)}\`)`;
      lines.push(`- \`${a.name()}\`: ${a.description}${d}`);
    }
    for (const o of command.options) {
      const d =
        o.defaultValue === undefined || typeof o.defaultValue === 'boolean'
          ? ''
          : ` (default: \`${Array.isArray(o.defaultValue) ? o.defaultValue.join(',') : String(o.defaultValue)}\`)`;
      lines.push(`- \`${o.flags}\`: ${o.description}${d}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
