import cluster from 'node:cluster';
import type { Command } from 'commander';
import { loadPolicy, PolicyError } from '../authz/policy.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { runPrimary, workerCount } from '../server/cluster.ts';
import { startGateway } from '../server/gateway.ts';
import { createLogger } from '../log/logger.ts';
import { addConfigFlags, flagOverrides } from './config-flags.ts';

export function registerServe(program: Command): void {
  addConfigFlags(program.command('serve', { isDefault: true }).description('run the gateway (what "npm start" does)'))
    .action(async (options: Record<string, unknown>) => {
      const { config } = loadConfigOrExit(options, 'serve');
      checkPolicyOrExit(config.authz.policyFile);
      const workers = workerCount(config.workers);
      if (workers > 1 && cluster.isPrimary) return runPrimary(config, workers, createLogger(config.log));
      const gateway = await startGateway(config);
      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        // A terminal's Ctrl-C reaches cluster workers too; only the primary's second one is urgent.
        if (++signals > 1 && !cluster.isWorker) process.exit(1); // a second Ctrl-C means now
        gateway.logger.info({ signal }, 'shutting down: finishing in-flight requests');
        void gateway.close().then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}

/** A policy file with problems stops start-up (before any worker starts), like a bad configuration. */
function checkPolicyOrExit(path: string): void {
  try {
    loadPolicy(path);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    process.stderr.write(`mlgate: ${err.message}\n`);
    process.exit(2);
  }
}

/**
 * Loads the configuration or prints every problem and exits with status 2. Commands that only manage
 * files (users, tokens, grants) do not need the variables routes' upstreamHeaders name.
 */
export function loadConfigOrExit(options: Record<string, unknown>, use: 'serve' | 'manage' = 'manage') {
  try {
    return loadConfig({ configPath: options.config as string | undefined, overrides: flagOverrides(options), routeVariables: use === 'serve' ? 'required' : 'optional' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`mlgate: ${err.message}\n`);
    process.exit(2);
  }
}
