// mlgate started the way a user runs it: the compiled build (`node dist/cli/main.js serve`, what
// `npm start` does after compiling; bench/run.ts compiles once first), with a YAML config in the workspace.
// Its working directory is a workspace folder too, so the relative defaults (config/tokens.json,
// config/session.key, certs/) land there and never in the checkout. Access logging stays on
// (log.level: info, JSON lines to a file): it is part of what a request costs.
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HOST, freePort, lastLines, request, waitForHttp } from '../lib/net.ts';
import { startProcess, stopProcess, type Started } from '../lib/processes.ts';
import { REPO_ROOT, gatewayEnv, type Workspace } from '../lib/workspace.ts';

export const MLGATE_MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');
/** The compiled gateway that `npm start` runs. */
const MLGATE_BUILT = join(REPO_ROOT, 'dist', 'cli', 'main.js');

interface MlgateOptions {
  /** Names the config and log files. */
  name: string;
  upstreamUrl: string;
  tls: boolean;
  /** `workers: auto` (node:cluster, one process per core). */
  workersAuto: boolean;
  /** The compiled CLI to run, when not this checkout's (--baseline: another revision's build). */
  main?: string;
  /** More top-level keys of mlgate.yaml, as YAML lines (e.g. session: and state: for the shared-state case). */
  extraConfig?: string[];
}

export interface Mlgate {
  url: string;
  process: Started;
  accessLog: string;
  /** Its working directory and config file, for CLI commands that must see the same files (token issue). */
  dir: string;
  configFile: string;
}

/** The gateway refused its configuration (e.g. a key it does not know yet): a reason to skip, not a failure. */
export class ConfigRejected extends Error {}

/** Node flags every mlgate process gets (--cpu-prof: bench/run.ts sets them once, from the command line). */
const profileFlags: string[] = [];
export function profileGatewaysInto(dir: string): void {
  profileFlags.splice(0, profileFlags.length, '--cpu-prof', `--cpu-prof-dir=${dir}`);
}

export async function startMlgate(ws: Workspace, options: MlgateOptions): Promise<Mlgate> {
  const port = await freePort();
  const dir = ws.path(options.name);
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, 'mlgate.yaml');
  const lines = [
    `host: ${HOST}`,
    `port: ${port}`,
    `upstream: ${options.upstreamUrl}`,
    // Bounded, so stopping it at the end never waits the default 30 s.
    'shutdownGrace: 2s',
    'auth:',
    `  htpasswd: ${JSON.stringify(ws.htpasswd)}`,
    // The bench user may log metrics to the bench's experiment (a group rule); see lib/mlflow-fixture.ts.
    'authz:',
    `  policyFile: ${JSON.stringify(ws.policyFile)}`,
    'log:',
    '  level: info',
    '  format: json',
  ];
  if (options.tls) lines.push('tls:', `  cert: ${JSON.stringify(ws.cert)}`, `  key: ${JSON.stringify(ws.key)}`);
  // One process unless asked: `workers` defaults to auto since issue 18, and `mlgate` is the one-process row.
  lines.push(`workers: ${options.workersAuto ? 'auto' : 1}`);
  lines.push(...(options.extraConfig ?? []));
  await writeFile(configFile, `${lines.join('\n')}\n`);

  const accessLog = join(dir, 'access.log');
  const logFd = openSync(accessLog, 'a');
  const args = ['--max-semi-space-size=8', ...profileFlags, options.main ?? MLGATE_BUILT, 'serve', '--config', configFile, ...(options.tls ? [] : ['--no-tls'])];
  // Enough descriptors for the idle-rss case's 1,000 connections (plus the upstream's).
  const gateway = startProcess(options.name, process.execPath, args, { cwd: dir, env: gatewayEnv(), stdoutFd: logFd, minOpenFiles: 8192 });
  closeSync(logFd); // the child has its own copy
  const url = `${options.tls ? 'https' : 'http'}://${HOST}:${port}`;
  try {
    await waitForHttp(`${url}/-/healthz`, gateway, 60_000);
    // The bench's user must get through, or every number after this would be a 401's.
    const check = await request(`${url}/health`, { headers: { authorization: ws.authorization } });
    if (check.status !== 200) throw new Error(`GET /health as ${ws.user.name} answered ${check.status}: ${check.body.slice(0, 200)}`);
  } catch (err) {
    await stopProcess(gateway, 3000);
    const output = gateway.output();
    if (/invalid configuration/.test(output)) throw new ConfigRejected(`mlgate rejected its configuration: ${lastLines(output, 3)}`);
    throw err;
  }
  return { url, process: gateway, accessLog, dir, configFile };
}
