// `substrate-driver`: one command for the driver, its clients, and the embedded local Substrate.
import { readFileSync } from 'node:fs';

const USAGE = `substrate-driver — OpenShell compute driver for Agent Substrate

Usage:
  substrate-driver serve [--socket PATH] [--config FILE] [--state-dir DIR] [--local] [--metrics-listen HOST:PORT]
  substrate-driver sandboxes list|get|create|stop|start|delete|watch [...]   (client of the driver socket)
  substrate-driver local serve|apply|images|workers|doctor [...]             (the embedded local Substrate)
  substrate-driver version

ateapi.Control (Substrate v0.4), kubectl-ate's verbs; the local instance over its Unix socket by default,
another Substrate with --endpoint HOST:PORT --token-file FILE:
  substrate-driver atespaces create|get|list|delete [...]
  substrate-driver templates create|get|list|delete [...]                     (actor templates)
  substrate-driver actors create|get|list|resume|suspend|pause|revert|migrate|delete [...]
  substrate-driver tags create|get|list|update|delete [...]
  substrate-driver egress-policy create|get|update|delete ACTOR -a A [...]
  substrate-driver workers list|get|drain|assignments [...]

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
    case 'actor':
      return (await import('./actors.js')).main(rest);
    case 'atespaces':
    case 'atespace':
      return (await import('./ate.js')).atespacesMain(rest);
    case 'templates':
    case 'template':
    case 'actor-templates':
    case 'actor-template':
      return (await import('./ate.js')).templatesMain(rest);
    case 'tags':
    case 'tag':
      return (await import('./ate.js')).tagsMain(rest);
    case 'egress-policy':
    case 'egress-policies':
      return (await import('./ate.js')).egressPolicyMain(rest);
    case 'workers':
    case 'worker':
      return (await import('./ate.js')).workersMain(rest);
    default:
      process.stderr.write(`substrate-driver: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}
