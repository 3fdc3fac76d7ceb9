import type { Command } from 'commander';
import { effectiveConfigYaml } from '../config/effective-config.ts';
import { displayPath } from '../config/load.ts';
import { addConfigFlags } from './config-flags.ts';
import { loadConfigOrExit } from './serve.ts';

/** `mlgate config check`: the start-up validation on its own, for CI and before a restart. */
export function registerConfigCheck(program: Command): void {
  const config = program.command('config').description('check the configuration: file, MLGATE_* variables and flags');
  addConfigFlags(config.command('check'))
    .description('print every problem in the configuration (exit 2), or the configuration in effect as YAML, secrets redacted')
    .action((options: Record<string, unknown>) => {
      const { config: effective, file } = loadConfigOrExit(options);
      // The verdict on stderr, so stdout is YAML that can be saved and used as a config file.
      process.stderr.write(`configuration OK (${file ? displayPath(file) : 'defaults'})\n`);
      process.stdout.write(effectiveConfigYaml(effective));
    });
}
