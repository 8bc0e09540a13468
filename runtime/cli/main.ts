#!/usr/bin/env node
import { CommanderError } from 'commander';
import { closeIdentityStores } from './commands/identity.js';
import { reportError } from './output.js';
import { buildProgram } from './program.js';

// A closed pipe (`keyhop demo | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

try {
  await buildProgram().parseAsync(process.argv);
  await closeIdentityStores();
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander already printed the message; help and version are not failures.
    process.exit(e.exitCode === 0 ? 0 : 2);
  }
  reportError(e);
}
