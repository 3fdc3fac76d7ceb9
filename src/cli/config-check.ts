import { resolve } from 'node:path';
import type { Command } from 'commander';
import { describePolicy, loadPolicy, PolicyError, type Policy } from '../authz/policy.ts';
import { effectiveConfigYaml } from '../config/effective-config.ts';
import { displayPath } from '../config/load.ts';
import { addConfigFlags } from './config-flags.ts';
import { checkHtpasswdOrExit, loadConfigOrExit } from './serve.ts';

/**
 * `mlgate config check`: the start-up validation on its own, for CI and before a restart: the
 * configuration, then the policy file it names (authz.policyFile), which also stops start-up when
 * it has problems.
 */
export function registerConfigCheck(program: Command): void {
  const config = program.command('config').description('check the configuration: file, MLGATE_* variables and flags');
  addConfigFlags(config.command('check'), 'all')
    .description('print every problem in the configuration and the policy file (exit 2), or the configuration in effect as YAML, secrets redacted, and the policy in force')
    .action((options: Record<string, unknown>) => {
      const { config: effective, file, originOf } = loadConfigOrExit(options, 'serve');
      checkHtpasswdOrExit(effective, originOf);
      // The verdict on stderr, so stdout is YAML that can be saved and used as a config file.
      process.stderr.write(`configuration OK (${file ? displayPath(file) : 'defaults'})\n`);
      const label = displayPath(resolve(effective.authz.policyFile));
      let policy: Policy;
      try {
        policy = loadPolicy(effective.authz.policyFile, label);
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        process.stderr.write(`mlgate: ${err.message}\n`);
        process.exit(2);
      }
      process.stderr.write(`${policySummary(policy, label)}\n`);
      process.stdout.write(effectiveConfigYaml(effective));
    });
}

/**
 * One line on the policy in force: "policy OK (config/policy.yaml): admins ...; 2 groups; 3 rules;
 * default READ", or, without the file, which built-in policy applies.
 */
function policySummary(policy: Policy, label: string): string {
  const { admins, groups, rules, default: level } = describePolicy(policy, label) as { admins: string[]; groups: number; rules: number; default: string };
  const count = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (policy.source === undefined) {
    const who = admins.length === 0 ? 'no admins' : `${admins.join(', ')} ${admins.length === 1 ? 'is the only admin' : 'are the admins'}`;
    return `policy: no file at ${label}, so the built-in policy applies: ${who}${policy.admins.htpasswdOnly ? ' (when signed in through the htpasswd file, not by a JWT)' : ''}; `
      + `no rules; everyone has ${level} on everything; creators have MANAGE on what they create`;
  }
  return `policy OK (${label}): ${admins.length ? `admins ${admins.join(', ')}` : 'no admins'}; ${count(groups, 'group')}; ${count(rules, 'rule')}; default ${level}`;
}
