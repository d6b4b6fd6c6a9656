#!/usr/bin/env node
// Entry point of the `substrate-driver` command. The project runs its TypeScript sources directly through
// tsx's loader, so what runs is always what is checked in (no separate build step to forget).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
