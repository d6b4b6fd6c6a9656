// `substrate-driver serve`: the ComputeDriver on its Unix socket. With --local it embeds the local Substrate
// (real gVisor) and still talks to it over real gRPC; without, it talks to the configured ateapi, or to a
// local Substrate found through <state-dir>/local.json.
import { ConfigError, loadConfig } from '../common/config.js';
import { logger, setLogLevel } from '../common/log.js';
import { runUntilStopped } from '../common/lifecycle.js';
import type { LocalEndpoints, RunningDriver } from '../driver/index.js';
import { configFlagValues, configFlags, helpText, parseArgs, runCommand, type CommandSpec } from './args.js';

const log = logger('serve');

const SPEC: CommandSpec = {
  usage: 'substrate-driver serve [--socket PATH] [--config FILE] [--state-dir DIR] [--local] [--metrics-listen HOST:PORT] [flags]',
  summary: 'Serve the OpenShell ComputeDriver (openshell.compute.v1) for Agent Substrate on a Unix socket.',
  flags: {
    socket: { type: 'string', arg: 'PATH', desc: 'driver Unix socket (config socket_path; default <state-dir>/run/driver.sock)' },
    ...configFlags(),
  },
  epilog: [
    'Every config key is also a flag (--api-endpoint for api_endpoint), an environment variable',
    '(OPENSHELL_SUBSTRATE_API_ENDPOINT) and a key of the [openshell.drivers.substrate] table of --config.',
    'Precedence: flag > environment > file > default. Invalid configuration exits with status 2.',
    '',
    'OpenShell v0.1 resource admission (the gateway reads the same keys; write them once in its gateway.toml',
    'and point --gateway-config at it):',
    '  allow_driver_config          let callers send a non-empty template.driver_config (default false)',
    '  resource_admission           table {enabled, required_labels}; flag/env take it as JSON, e.g.',
    '                               \'{"enabled":true,"required_labels":{"openshell.ai/sandbox-attachable":"true"}}\'',
    '  template_labels              labels of pre-provisioned ActorTemplates, by "<namespace>/<name>";',
    '                               flag/env JSON \'{"default/shared":{"openshell.ai/sandbox-attachable":"true"}}\'',
    '',
    'Gateway side, OpenShell v0.1: [openshell] version = 2, [openshell.gateway] compute_driver = "substrate"',
    'and [openshell.drivers.substrate] socket_path = "<the --socket path>" (plus the admission keys above).',
    'OpenShell 0.0.x: [openshell.gateway] compute_drivers = ["substrate"] and the same socket_path.',
  ].join('\n'),
};

export async function main(argv: string[]): Promise<number> {
  return runCommand('substrate-driver serve', async () => {
    const p = parseArgs(argv, SPEC);
    if (p.help) {
      process.stdout.write(helpText(SPEC));
      return 0;
    }
    const flags = configFlagValues(p.flags);
    if (typeof p.flags.socket === 'string') flags.socket_path = p.flags.socket;
    const cfg = loadConfig({ flags });
    setLogLevel(cfg.logLevel);

    let localStop: (() => Promise<void>) | undefined;
    let local: LocalEndpoints | undefined;
    let relocateLocal: (() => LocalEndpoints | undefined) | undefined;
    let driverModule: Promise<typeof import('../driver/index.js')> | undefined;
    if (cfg.local) {
      const { startLocalSubstrate } = await import('../local/index.js');
      const { ensureDefaultImage } = await import('../local/images.js');
      // The driver's modules (the Kubernetes client among them) load while the local Substrate starts, which
      // waits mostly on runsc and ip: a restart after a crash is back sooner.
      driverModule = import('../driver/index.js');
      driverModule.catch(() => undefined);
      // The embedded local Substrate takes the same local_* settings as `local serve` (one loader). Its router
      // listens on router_listen, or else where router_url points (default 127.0.0.1:8000).
      const { localSubstrateOptions } = await import('./local.js');
      const lo = localSubstrateOptions(cfg);
      if (!lo.routerListen && cfg.routerUrl) {
        const u = new URL(cfg.routerUrl);
        lo.routerListen = `${u.hostname}:${u.port || '80'}`;
      }
      const h = await startLocalSubstrate(lo);
      localStop = () => h.stop();
      const img = await ensureDefaultImage(h.stateDir).catch(() => undefined);
      // The driver talks to its own instance over the owner-only Unix socket: no token to keep.
      local = { apiEndpoint: `unix:${h.socketPath}`, apiTls: false, stateDir: h.stateDir, defaultImage: img?.ref, routerUrl: h.routerUrl };
    } else if (!cfg.apiEndpoint) {
      const { readLocalJson } = await import('../local/index.js');
      const lj = readLocalJson(cfg.stateDir);
      if (lj) {
        // That local Substrate may stop or restart (on another port if its old one is taken): local.json is
        // read again before every call, and only a live instance, named by its pid and nonce, gets one.
        relocateLocal = () => {
          const now = readLocalJson(cfg.stateDir);
          return now && local
            ? { ...local, apiEndpoint: `unix:${now.socket_path}`, apiTls: false, nonce: now.nonce, routerUrl: now.router_url }
            : undefined;
        };
        const { ensureDefaultImage } = await import('../local/images.js');
        const img = await ensureDefaultImage(lj.state_dir).catch(() => undefined);
        local = {
          apiEndpoint: `unix:${lj.socket_path}`,
          apiTls: false,
          nonce: lj.nonce,
          stateDir: lj.state_dir,
          defaultImage: img?.ref,
          routerUrl: lj.router_url,
        };
        log.info('using the local Substrate found in the state directory', { pid: lj.pid, socket: lj.socket_path });
      }
    }

    if (!cfg.apiEndpoint && !local) {
      throw new ConfigError(
        'api_endpoint',
        'default',
        `no ateapi endpoint: set api_endpoint (--api-endpoint, OPENSHELL_SUBSTRATE_API_ENDPOINT or the config file), use --local, or start a local Substrate for ${cfg.stateDir}`,
      );
    }

    let running: RunningDriver;
    try {
      const { runDriver } = await (driverModule ?? import('../driver/index.js'));
      running = await runDriver({ config: cfg, local, relocateLocal });
    } catch (e) {
      await localStop?.();
      throw e;
    }
    log.info('serving', {
      socket: running.server.socketPath,
      api: running.target.endpoint,
      tls: !running.target.plaintext,
      metrics: running.server.metricsAddress ?? '',
      local: !!local,
    });
    // One machine-readable line on stdout for scripts: where to connect.
    process.stdout.write(
      JSON.stringify({ socket: running.server.socketPath, api: running.target.endpoint, metrics: running.server.metricsAddress ?? null }) + '\n',
    );

    return runUntilStopped(
      async () => {
        await running.close();
        await localStop?.();
      },
      { what: local ? 'driver and embedded local Substrate' : 'driver' },
    );
  });
}
