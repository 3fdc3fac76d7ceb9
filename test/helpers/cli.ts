// Runs the mlgate command line as a user would, in its own process.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inject } from 'vitest';
import { compiledCliMain } from './compiled-cli.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

let cliArgs: string[] | undefined;

/**
 * The node arguments that start the CLI: compiled (test/helpers/compiled-cli.ts) under vitest,
 * where the global setup gives each run a directory for it, else the TypeScript through tsx.
 */
function cliCommand(): string[] {
  if (!cliArgs) {
    const runDir = inject('cliBuildDir');
    cliArgs = runDir ? [compiledCliMain(PROJECT_ROOT, runDir)] : ['--import', TSX, MAIN];
  }
  return cliArgs;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; input?: string }): CliResult {
  const result = spawnSync(process.execPath, [...cliCommand(), ...args], {
    cwd: options.cwd,
    env: { ...cleanEnv(), ...options.env },
    input: options.input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface RunningCli {
  child: ChildProcessWithoutNullStreams;
  output(): { stdout: string; stderr: string };
  /** Resolves with the first stdout/stderr text that matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function spawnCli(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): RunningCli {
  return spawnNode([...cliCommand(), ...args], options);
}

/** Any node command line, e.g. the compiled CLI: spawnNode(['dist/cli/main.js', 'serve'], ...). */
export function spawnNode(nodeArgs: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): RunningCli {
  const child = spawn(process.execPath, nodeArgs, { cwd: options.cwd, env: { ...cleanEnv(), ...options.env } });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; listeners.forEach((l) => l()); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; listeners.forEach((l) => l()); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => ({ stdout, stderr }),
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = (stdout + stderr).match(pattern);
          if (!match) return;
          cleanup();
          resolve(match);
        };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${pattern}; output:\n${stdout}\n${stderr}`)); }, timeoutMs);
        const cleanup = () => { clearTimeout(timer); listeners.delete(check); };
        listeners.add(check);
        void exited.then(() => { if (listeners.has(check)) { cleanup(); reject(new Error(`process exited before ${pattern}; output:\n${stdout}\n${stderr}`)); } });
        check();
      });
    },
  };
}

/** The test runner's own MLGATE_* settings must not leak into the process under test. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MLGATE_')));
}

/** The JSON log lines a CLI wrote to stdout so far (stdout is not a TTY here, so logs are JSON). */
export function jsonLogLines(stdout: string): Record<string, unknown>[] {
  return stdout.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Waits for the "mlgate listening" line and returns the URL it names (needed with --port 0). */
export async function listeningUrl(cli: RunningCli, timeoutMs = 30_000): Promise<string> {
  const match = await cli.waitFor(/"url":"([^"]+)"[^\n]*"msg":"mlgate listening"/, timeoutMs);
  return match[1]!;
}

/** Sends a signal and waits for the exit status, failing instead of hanging if the process stays. */
export async function stopCli(cli: RunningCli, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<number | null> {
  if (cli.child.exitCode !== null || cli.child.signalCode !== null) return cli.exited;
  cli.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      cli.child.kill('SIGKILL');
      reject(new Error(`process did not exit within ${timeoutMs} ms of ${signal}; output:\n${cli.output().stdout}\n${cli.output().stderr}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([cli.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
