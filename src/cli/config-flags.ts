import type { Command } from 'commander';
import { parseScalar, type ConfigOverride } from '../config/load.ts';

/** Flags shared by every command that reads the configuration, each mapped to its config key. */
const FLAGS: { flag: string; description: string; path: string[] }[] = [
  { flag: '--host <address>', description: 'address to listen on (host)', path: ['host'] },
  { flag: '--port <number>', description: 'port to listen on (port)', path: ['port'] },
  { flag: '--upstream <url>', description: 'MLflow tracking server URL (upstream)', path: ['upstream'] },
  { flag: '--htpasswd <file>', description: 'htpasswd file (auth.htpasswd)', path: ['auth', 'htpasswd'] },
  { flag: '--tls-cert <file>', description: 'TLS certificate chain, PEM (tls.cert)', path: ['tls', 'cert'] },
  { flag: '--tls-key <file>', description: 'TLS private key, PEM (tls.key)', path: ['tls', 'key'] },
  { flag: '--no-tls', description: 'serve plain HTTP, e.g. behind another TLS terminator (tls.enabled: false)', path: ['tls', 'enabled'] },
  { flag: '--workers <n>', description: 'processes to run, or "auto" for one per core (workers)', path: ['workers'] },
  { flag: '--log-level <level>', description: 'trace, debug, info, warn, error (log.level)', path: ['log', 'level'] },
];

type FlagName = 'htpasswd' | 'upstream';

/**
 * --config, and of the other flags 'all' (serve, config check) or those the command uses: a flag it
 * would take and ignore ("user list --port 9000") would only mislead, so it is refused instead.
 */
export function addConfigFlags(command: Command, flags: 'all' | readonly FlagName[]): Command {
  command.option('-c, --config <file>', 'YAML configuration file (default: config/mlgate.yaml if present, or $MLGATE_CONFIG)');
  for (const { flag, description } of FLAGS) if (flags === 'all' || flags.some((name) => flag.startsWith(`--${name} `))) command.option(flag, description);
  return command;
}

/** Turns parsed flags into overrides that win over the file and the environment. */
export function flagOverrides(options: Record<string, unknown>): ConfigOverride[] {
  const overrides: ConfigOverride[] = [];
  for (const { flag, path } of FLAGS) {
    const long = /--(?:no-)?([a-z-]+)/.exec(flag)![1]!;
    const key = long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const value = options[key];
    if (flag.startsWith('--no-')) {
      if (value === false) overrides.push({ path, value: false, origin: `${flag} (command line)` });
      continue;
    }
    if (value === undefined) continue;
    overrides.push({ path, value: typeof value === 'string' ? parseScalar(value) : value, origin: `--${long} (command line)` });
  }
  return overrides;
}
