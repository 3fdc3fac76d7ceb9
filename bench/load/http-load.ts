// HTTP load: wrk when installed (a separate, native process), autocannon only as a fallback
// (in the runner's own process, so its numbers are lower; it is not a dependency of the project).
import { hasCommand } from '../lib/workspace.ts';
import { startWrk, type WrkResult, type WrkRun } from './wrk.ts';

type LoadRun = WrkRun;
type LoadResult = WrkResult;

export const AUTOCANNON_NOTE = 'wrk is not installed: install wrk (apt-get install wrk), or `npm i -D autocannon` for the slower in-process fallback';

let generator: 'wrk' | 'autocannon' | 'none' | undefined;

export async function loadGenerator(): Promise<'wrk' | 'autocannon' | 'none'> {
  if (generator) return generator;
  if (await hasCommand('wrk')) return (generator = 'wrk');
  return (generator = (await importAutocannon()) ? 'autocannon' : 'none');
}

/** Starts a load run; `result` settles when it ends (after run.durationS). */
export async function startLoad(run: LoadRun): Promise<{ stop(): void; result: Promise<LoadResult> }> {
  const which = await loadGenerator();
  if (which === 'wrk') {
    const wrk = startWrk(run);
    return { stop: () => wrk.process.child.kill('SIGINT'), result: wrk.result };
  }
  if (which === 'none') throw new Error(AUTOCANNON_NOTE);
  return startAutocannon(run, (await importAutocannon())!);
}

export async function runLoad(run: LoadRun): Promise<LoadResult> {
  return (await startLoad(run)).result;
}

type Autocannon = (options: Record<string, unknown>) => { stop(): void } & PromiseLike<AutocannonResult>;
interface AutocannonResult {
  requests: { total: number; average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

async function importAutocannon(): Promise<Autocannon | undefined> {
  // A variable specifier: the project does not depend on autocannon, so it must not be resolved at type-check time.
  const name = 'autocannon';
  try {
    return ((await import(name)) as { default: Autocannon }).default;
  } catch {
    return undefined;
  }
}

const METRIC_BODY = '{"run_id":"4f2e9c1d8a7b4e3f9a1b2c3d4e5f6a7b","key":"loss","value":0.2513,"timestamp":1700000000000,"step":42}';

function startAutocannon(run: LoadRun, autocannon: Autocannon): { stop(): void; result: Promise<LoadResult> } {
  const env = run.env ?? {};
  const auth = env.BENCH_AUTHORIZATION ? { authorization: env.BENCH_AUTHORIZATION } : {};
  const victims = (env.BENCH_VICTIMS ?? '').split(',').filter(Boolean);
  let counter = 0;
  const options: Record<string, unknown> = run.script === 'wrong-passwords'
    ? {
      requests: [{
        method: 'GET',
        path: '/api/2.0/mlflow/experiments/search',
        setupRequest: (req: Record<string, unknown>) => {
          const user = victims[counter++ % victims.length] ?? 'nobody';
          const guess = `guess-${counter}-${Math.random().toString(36).slice(2)}`;
          return { ...req, headers: { authorization: `Basic ${Buffer.from(`${user}:${guess}`).toString('base64')}` } };
        },
      }],
    }
    : { method: 'POST', body: METRIC_BODY, headers: { 'content-type': 'application/json', ...auth } };
  const instance = autocannon({ url: run.url, connections: run.connections, duration: run.durationS, timeout: run.timeoutS ?? 10, ...options });
  const result = Promise.resolve(instance).then((r): LoadResult => ({
    requests: r.requests.total,
    requestsPerS: r.requests.average,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    socketErrors: { connect: 0, read: r.errors - r.timeouts, write: 0, timeout: r.timeouts },
  }));
  return { stop: () => instance.stop(), result };
}
