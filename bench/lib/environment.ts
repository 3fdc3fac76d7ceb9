// What the numbers were measured on, printed first and stored with the results: without it, a
// table from another machine (or from a busy one) cannot be compared.
import { cpus, loadavg, release, totalmem } from 'node:os';
import { runToEnd } from './processes.ts';
import { REPO_ROOT, hasCommand } from './workspace.ts';

interface Environment {
  cores: number;
  cpu: string;
  memoryGB: number;
  kernel: string;
  node: string;
  nginx?: string;
  caddy?: string;
  wrk?: string;
  curl?: string;
  mlgateCommit: string;
  /** The 1-minute load average when the run began: other work on the machine skews every number. */
  loadAverage: number;
}

async function firstLine(command: string, args: string[]): Promise<string | undefined> {
  if (!(await hasCommand(command))) return undefined;
  const result = await runToEnd(command, command, args, { timeoutMs: 5000 });
  // nginx -v and wrk -v write to stderr (and wrk exits 1), so both streams are read.
  return result.output.trim().split('\n')[0]?.replace(/ Copyright.*/, '').trim() || undefined;
}

export async function describeEnvironment(): Promise<Environment> {
  const commit = await runToEnd('git', 'git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT });
  // Other people edit src/ while benchmarks run: say whether the measured code was committed.
  const dirty = await runToEnd('git', 'git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT });
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGB: Math.round(totalmem() / 1e9),
    kernel: release(),
    node: process.version,
    nginx: (await firstLine('nginx', ['-v']))?.replace('nginx version: ', ''),
    caddy: (await firstLine('caddy', ['version']))?.split(' ')[0],
    wrk: await firstLine('wrk', ['-v']),
    curl: (await firstLine('curl', ['--version']))?.split(' ').slice(0, 2).join(' '),
    mlgateCommit: `${commit.output.trim() || 'unknown'}${dirty.output.trim() ? ' + uncommitted changes in src/' : ''}`,
    loadAverage: loadavg()[0] ?? 0,
  };
}

export function renderEnvironment(env: Environment): string {
  return [
    `machine   ${env.cores} cores (${env.cpu}), ${env.memoryGB} GB, Linux ${env.kernel}, load average ${env.loadAverage.toFixed(2)} at start`,
    `software  node ${env.node}; nginx ${env.nginx ?? 'not installed'}; caddy ${env.caddy ?? 'not installed'}; ${env.wrk ?? 'wrk not installed'}; ${env.curl ?? 'curl not installed'}`,
    `mlgate    ${env.mlgateCommit}`,
  ].join('\n');
}
