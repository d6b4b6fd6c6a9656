// `substrate-driver`: one command for the driver, its clients, and the embedded local Substrate.
import { readFileSync } from 'node:fs';

const USAGE = `substrate-driver — OpenShell compute driver for Agent Substrate

Usage:
  substrate-driver serve [--socket PATH] [--config FILE] [--state-dir DIR] [--local] [--metrics-listen HOST:PORT]
  substrate-driver sandboxes list|get|create|stop|start|delete|watch [...]   (client of the driver socket)
  substrate-driver actors list|get|suspend|resume|pause|migrate|delete [...] (client of ateapi.Control)
  substrate-driver local serve|apply|images|workers|doctor [...]             (the embedded local Substrate)
  substrate-driver version

Run any command with --help for its options.
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    case 'version':
    case '--version': {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`${pkg.version}\n`);
      return 0;
    }
    case 'local':
      return (await import('./local.js')).main(rest);
    case 'serve':
      return (await import('./serve.js')).main(rest);
    case 'sandboxes':
      return (await import('./sandboxes.js')).main(rest);
    case 'actors':
      return (await import('./actors.js')).main(rest);
    default:
      process.stderr.write(`substrate-driver: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}
