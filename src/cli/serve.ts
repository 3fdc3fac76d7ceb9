import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { isDefaultHtpasswd, missingHtpasswdMessage } from '../auth/bootstrap-admin.ts';
import { loadPolicy, PolicyError } from '../authz/policy.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { closestName } from '../config/suggest.ts';
import { runPrimary, workerCount, workerShare } from '../server/cluster.ts';
import { listenError, probePorts, warnAtStartup } from '../server/startup-checks.ts';
import { createLogger } from '../log/logger.ts';
import { addConfigFlags, flagOverrides } from './config-flags.ts';

export function registerServe(program: Command): void {
  addConfigFlags(program.command('serve', { isDefault: true }).description('run the gateway (what "npm start" does)'), 'all')
    // As the default command it receives whatever else was typed; the action says what was wrong with it.
    .allowExcessArguments()
    .allowUnknownOption()
    .action(async (options: Record<string, unknown>, command: Command) => {
      if (command.args.length) throw new Error(strayArguments(program, command));
      const { config, originOf } = loadConfigOrExit(options, 'serve');
      checkHtpasswdOrExit(config, originOf);
      checkPolicyOrExit(config.authz.policyFile);
      const workers = workerCount(config);
      if (workers > 1 && cluster.isPrimary) {
        await probePorts(config).catch((err: unknown) => { throw listenError(err, config); });
        return runPrimary(config, workers, createLogger(config.log));
      }
      // Imported here, not at the top: the primary of `workers: N` only forks and supervises, and
      // the gateway's modules would cost it ~20 MB of resident memory for nothing.
      const { startGateway } = await import('../server/gateway.ts');
      // A worker enforces its share of the limits, so that they hold for the whole gateway.
      const gateway = await startGateway(workerShare(config, workers)).catch((err: unknown) => { throw listenError(err, config); });
      void warnAtStartup(config, gateway.logger);
      if (config.workers === 'auto' && config.acme.domains.length) gateway.logger.info('acme.domains: one gateway process (ACME with several is not supported yet)');
      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        // A terminal's Ctrl-C reaches cluster workers too; only the primary's second one is urgent.
        if (++signals > 1 && !cluster.isWorker) process.exit(1); // a second Ctrl-C means now
        gateway.logger.info({ signal }, 'shutting down: finishing in-flight requests');
        void gateway.close().then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      process.on('SIGHUP', () => gateway.reload());
    });
}

/**
 * What else reached the default command: the name of a command mistyped ("mlgate usr list", also
 * with that command's options: "mlgate tokn list --user bob"), an option serve does not take, or
 * an argument to serve, which takes none.
 */
function strayArguments(program: Command, serve: Command): string {
  const args = serve.args;
  const names = program.commands.map((command) => command.name());
  // A typo ("usr", "grnat") or the start ("tok") of a command's name.
  const commandLike = (word: string) => guessName(word, names) ?? names.find((name) => name.startsWith(word));
  const typed = program.args[0] === serve.name() ? undefined
    : args.find((arg) => !arg.startsWith('-') && commandLike(arg)) ?? (args[0]!.startsWith('-') ? undefined : args[0]);
  if (typed !== undefined) {
    const guess = commandLike(typed);
    return `unknown command '${typed}'${guess ? ` (did you mean ${guess}?)` : ''}; "mlgate --help" lists the commands`;
  }
  const option = args.find((arg) => arg.startsWith('-'));
  if (option === undefined) return `serve takes no arguments, got '${args[0]}'; "mlgate serve --help" lists its options`;
  const flag = option.split('=')[0]!;
  const flags = serve.options.map((known) => known.long).filter((long): long is string => long !== undefined);
  const guess = guessName(flag, flags);
  return `unknown option '${flag}'${guess ? ` (did you mean ${guess}?)` : ''}; "mlgate serve --help" lists the options`;
}

/** closestName does not count a swap ("--prot", "grnat") as one edit; the same letters in another order are as likely meant. */
function guessName(word: string, names: readonly string[]): string | undefined {
  const letters = (text: string) => [...text].sort().join('');
  return closestName(word, names) ?? names.find((name) => letters(name) === letters(word));
}

/**
 * The first start creates only the default htpasswd file: any other path that does not exist is a
 * mistake in the configuration, and stops start-up as one (status 2), naming where it was set.
 */
export function checkHtpasswdOrExit(config: Config, originOf: (keyPath: readonly string[]) => string): void {
  const path = config.auth.htpasswd;
  if (existsSync(path) || isDefaultHtpasswd(path)) return;
  process.stderr.write(`mlgate: invalid configuration:\n  ${originOf(['auth', 'htpasswd'])}: auth.htpasswd: ${missingHtpasswdMessage(path)}\n`);
  process.exit(2);
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
