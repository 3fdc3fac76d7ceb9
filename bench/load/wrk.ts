// Runs wrk with one of the Lua scripts beside this file and reads its --latency report.
import { fileURLToPath } from 'node:url';
import { lastLines } from '../lib/net.ts';
import { startProcess, stopProcess, type Started } from '../lib/processes.ts';

export interface WrkRun {
  url: string;
  script: 'post-metric' | 'wrong-passwords';
  threads: number;
  connections: number;
  durationS: number;
  /** Requests slower than this are counted as timeouts and left out of the latency figures. */
  timeoutS?: number;
  env?: Record<string, string>;
}

export interface WrkResult {
  requests: number;
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses other than 2xx/3xx. */
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrong-passwords.lua only: refusals with Retry-After, i.e. from a lockout, without a hash check. */
  lockoutRefusals?: number;
}

export function scriptPath(name: WrkRun['script']): string {
  return fileURLToPath(new URL(`./lua/${name}.lua`, import.meta.url));
}

/** Starts wrk without waiting for it (the flood runs alongside another measurement). */
export function startWrk(run: WrkRun): { process: Started; result: Promise<WrkResult> } {
  const args = [
    `-t${run.threads}`, `-c${run.connections}`, `-d${run.durationS}s`, '--latency',
    '--timeout', `${run.timeoutS ?? 10}s`, '-s', scriptPath(run.script), run.url,
  ];
  const wrk = startProcess(`wrk ${run.script}`, 'wrk', args, { env: { ...process.env, ...run.env } });
  let stdout = '';
  wrk.child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  // wrk stops by itself; this only guards against a target that never lets go.
  const guard = setTimeout(() => void stopProcess(wrk, 2000), (run.durationS + (run.timeoutS ?? 10) + 15) * 1000);
  const result = wrk.exited.then((code) => {
    clearTimeout(guard);
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${lastLines(wrk.output(), 3)}`);
    return parseWrk(stdout);
  });
  return { process: wrk, result };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function parseWrk(text: string): WrkResult {
  const latency = (pct: string) => {
    const match = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    return match ? Number(match[1]) * UNIT_MS[match[2]!]! : NaN;
  };
  const requests = /(\d+) requests in/.exec(text);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!requests || !rate) throw new Error(`could not read wrk's report: ${lastLines(text, 4)}`);
  const lockout = /^lockout-refusals (\d+)$/m.exec(text);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requests: Number(requests[1]),
    requestsPerS: Number(rate[1]),
    p50Ms: latency('50'),
    p99Ms: latency('99'),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: {
      connect: Number(errors?.[1] ?? 0), read: Number(errors?.[2] ?? 0), write: Number(errors?.[3] ?? 0), timeout: Number(errors?.[4] ?? 0),
    },
    lockoutRefusals: lockout ? Number(lockout[1]) : undefined,
  };
}
