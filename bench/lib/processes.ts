// Every process the benchmark starts goes through here, so that each one is known by its process id
// and stopped by that id at the end, on Ctrl-C and on errors alike.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Started {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  exited: Promise<number | string>;
  running(): boolean;
  /** The last few KiB of what the process wrote to its captured stdout/stderr. */
  output(): string;
}

interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** A file descriptor for stdout (e.g. an access log); otherwise stdout is captured like stderr. */
  stdoutFd?: number;
  /** Open file descriptors the process needs (connections): raised with `ulimit -n` where the soft limit is lower. */
  minOpenFiles?: number;
}

const OUTPUT_TAIL = 16 * 1024;
const live = new Map<number, Started>();

export function startProcess(name: string, command: string, args: string[], options: StartOptions = {}): Started {
  const [cmd, argv] = withOpenFileLimit(command, args, options.minOpenFiles);
  const stdio: StdioOptions = ['ignore', options.stdoutFd ?? 'pipe', 'pipe'];
  // Own process group: a Ctrl-C in the terminal reaches only the runner, which then stops
  // everything in order by pid (a gateway and its load generator must not race to exit).
  const child = spawn(cmd, argv, { cwd: options.cwd, env: options.env ?? process.env, stdio, detached: true });
  let tail = '';
  const keep = (chunk: Buffer) => { tail = (tail + chunk.toString()).slice(-OUTPUT_TAIL); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitedWith: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve((exitedWith = code ?? signal ?? -1)));
    child.once('error', (err) => { tail += `\n${err.message}`; resolve((exitedWith = -1)); });
  });
  if (child.pid === undefined) {
    // spawn failed synchronously (e.g. ENOENT); the 'error' event carries the reason.
    return { name, pid: -1, child, exited, running: () => false, output: () => tail };
  }
  const started: Started = { name, pid: child.pid, child, exited, running: () => exitedWith === undefined, output: () => tail };
  live.set(child.pid, started);
  void exited.then(() => live.delete(child.pid!));
  return started;
}

/** Runs a short command to completion and returns its output (for versions and one-off tools). */
export async function runToEnd(name: string, command: string, args: string[], options: StartOptions & { timeoutMs?: number } = {}) {
  const started = startProcess(name, command, args, options);
  let stdout = '';
  started.child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  const timer = setTimeout(() => void stopProcess(started, 1000), options.timeoutMs ?? 30_000);
  const code = await started.exited;
  clearTimeout(timer);
  return { code, stdout, output: started.output() };
}

/**
 * SIGTERM to the process, then SIGKILL after the grace period; children it leaves behind (nginx
 * workers, cluster workers) are found by pid beforehand and killed too if still there.
 */
export async function stopProcess(started: Started, graceMs = 5000): Promise<void> {
  if (!started.running()) return;
  const family = descendantsOf(started.pid);
  signal(started.pid, 'SIGTERM');
  const timedOut = await Promise.race([started.exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut) signal(started.pid, 'SIGKILL');
  await started.exited;
  for (const child of family) if (sameProcess(child)) signal(child.pid, 'SIGKILL');
}

/** Stops every process still running, newest first (load generators before the servers they hit). */
export async function stopAll(graceMs = 5000): Promise<void> {
  const all = [...live.values()].reverse();
  for (const started of all) await stopProcess(started, graceMs);
}

/** Last resort when the runner itself is exiting: SIGKILL by pid, synchronously. */
export function killAllNow(): void {
  for (const started of live.values()) {
    for (const child of descendantsOf(started.pid)) signal(child.pid, 'SIGKILL');
    signal(started.pid, 'SIGKILL');
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface ProcessId { pid: number; startTime: string }

/** A process and all its descendants, each with its start time so a reused pid is never signalled. */
function descendantsOf(root: number): ProcessId[] {
  const children = new Map<number, ProcessId[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push({ pid: Number(entry), startTime: stat.startTime });
    children.set(stat.ppid, list);
  }
  const found: ProcessId[] = [];
  const queue = [root];
  while (queue.length) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/** The process itself plus its descendants: what "the gateway's memory" or "nginx's memory" adds up. */
export function processTree(root: number): number[] {
  return [root, ...descendantsOf(root).map((child) => child.pid)];
}

/** Fields of /proc/<pid>/stat after the command name (which may itself contain spaces and parentheses). */
export function readStat(pid: number): { ppid: number; utime: number; stime: number; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state(0) ppid(1) ... utime(11) stime(12) ... starttime(19)
  return { ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]), startTime: fields[19] ?? '' };
}

function sameProcess(id: ProcessId): boolean {
  return readStat(id.pid)?.startTime === id.startTime;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function openFileSoftLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    return Infinity;
  }
}

function withOpenFileLimit(command: string, args: string[], minimum?: number): [string, string[]] {
  if (!minimum || openFileSoftLimit() >= minimum) return [command, args];
  // exec keeps the pid, so the process is still stopped by the pid spawn returned.
  return ['sh', ['-c', `ulimit -n ${minimum} 2>/dev/null; exec "$0" "$@"`, command, ...args]];
}
