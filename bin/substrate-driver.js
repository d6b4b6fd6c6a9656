#!/usr/bin/env node
// Entry point of the `substrate-driver` command. The project runs its TypeScript sources directly through
// tsx's loader, so what runs is always what is checked in (no separate build step to forget).
import { register } from 'tsx/esm/api';

register();
// A reader that goes away (`| head`) ends the output; it is not an error of the command.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
