// Small API requests (MLflow's log-metric POST) over kept-alive connections: the gateway's
// per-request cost, with Basic auth, with a Bearer token, and against nginx without any auth.
import { runLoad } from '../load/http-load.ts';
import { cpuMicros } from '../lib/memory-and-cpu.ts';
import { REPO_ROOT, TSX } from '../lib/workspace.ts';
import { runToEnd, sleep } from '../lib/processes.ts';
import { request } from '../lib/net.ts';
import { MLGATE_MAIN, type Mlgate } from '../servers/mlgate.ts';
import type { Endpoint } from '../servers/targets.ts';
import { requireSuccess, type BenchCase, type CaseContext, type Measurement } from './bench-case.ts';

const PATH = '/api/2.0/mlflow/runs/log-metric';

async function postMetrics(ctx: CaseContext, endpoint: Endpoint, threads: number, connections: number, authorization: string): Promise<Measurement> {
  // The gateway's CPU time per answered request (issue 18's target is for one process), from /proc.
  const pids = endpoint.mlgate ? endpoint.pids() : [];
  const cpuBefore = cpuMicros(pids);
  const result = await runLoad({
    url: endpoint.url + PATH, script: 'post-metric', threads, connections, durationS: ctx.options.durationS,
    // nginx's auth_basic checks bcrypt per request: give its slow answers time instead of calling them timeouts.
    timeoutS: 30,
    env: { BENCH_AUTHORIZATION: authorization },
  });
  // Only with many connections is there a backlog worth restarting nginx for.
  if (connections > 1) await endpoint.dropBacklog?.();
  requireSuccess(endpoint.label, result.requests, result.non2xx);
  const { timeout, connect, read, write } = result.socketErrors;
  // wrk reports 0 latencies when nothing completed; "no answer" is the truth.
  const latency = (ms: number) => (result.requests === 0 ? Infinity : ms);
  const cpu: Record<string, number> = pids.length > 0 && result.requests > 0 ? { cpuUsPerRequest: (cpuMicros(pids) - cpuBefore) / result.requests } : {};
  return { value: result.requestsPerS, p50Ms: latency(result.p50Ms), p99Ms: latency(result.p99Ms), extra: { requests: result.requests, timeouts: timeout, socketErrors: connect + read + write, ...cpu } };
}

function errorNotes(extra: Record<string, number>): string {
  const parts = [];
  if (extra.cpuUsPerRequest !== undefined) parts.push(`${extra.cpuUsPerRequest.toFixed(0)} µs CPU per request`);
  if (extra.timeouts) parts.push(`${extra.timeouts} timeouts`);
  if (extra.socketErrors) parts.push(`${extra.socketErrors} socket errors`);
  if (extra.requests === 0) parts.push('no answer within a run (median): every request waits behind the others\' bcrypt checks');
  else if (extra.requests !== undefined && extra.requests < 1000) parts.push(`only ${extra.requests} answer${extra.requests === 1 ? '' : 's'} per run`);
  return parts.join(', ');
}

export const smallBasic: BenchCase = {
  name: 'small-basic',
  unit: 'req/s',
  about: 'POST log-metric (small JSON), keep-alive, wrk -t2 -c50, Basic auth as a user with a bcrypt cost-12 hash (direct: the header is ignored)',
  flavor: 'auth',
  targets: ['direct', 'nginx', 'caddy', 'mlgate', 'mlgate-auto'],
  measure: (ctx, _target, endpoint) => postMetrics(ctx, endpoint!, 2, 50, ctx.ws.authorization),
  notes: errorNotes,
};

export const smallNoauth: BenchCase = {
  ...smallBasic,
  name: 'small-noauth',
  about: 'the same load, nginx WITHOUT auth_basic against mlgate WITH Basic auth: what the gateway costs over a bare proxy',
  flavor: 'noauth',
  targets: ['direct', 'nginx', 'mlgate', 'mlgate-auto'],
};

export const latencyOneConnection: BenchCase = {
  name: 'latency-1conn',
  unit: 'req/s',
  about: 'the same POST on 1 connection (wrk -t1 -c1): latency a single client sees; notes give p50 added over direct',
  flavor: 'auth',
  targets: ['direct', 'nginx', 'caddy', 'mlgate', 'mlgate-auto'],
  measure: (ctx, _target, endpoint) => postMetrics(ctx, endpoint!, 1, 1, ctx.ws.authorization),
  notes: errorNotes,
};

/** Tokens issued per gateway instance (each has its own token file). */
const tokens = new Map<string, Promise<string>>();

export const smallBearer: BenchCase = {
  name: 'small-bearer',
  unit: 'req/s',
  about: 'as small-basic, with `Authorization: Bearer <token>` from `mlgate token issue` (gateways only; direct for reference)',
  flavor: 'auth',
  targets: ['direct', 'mlgate', 'mlgate-auto'],
  async skipReason() {
    const help = await runToEnd('mlgate token --help', process.execPath, ['--import', TSX, MLGATE_MAIN, 'token', '--help'], { cwd: REPO_ROOT });
    return help.code === 0 ? undefined : 'needs tokens (issue 4): `mlgate token` does not exist yet';
  },
  async measure(ctx, _target, endpoint) {
    let authorization = ctx.ws.authorization;
    if (endpoint!.mlgate) {
      const instance = endpoint!.mlgate;
      let token = tokens.get(instance.url);
      if (!token) {
        token = issueToken(instance, ctx.ws.user.name);
        tokens.set(instance.url, token);
      }
      authorization = `Bearer ${await token}`;
    }
    return postMetrics(ctx, endpoint!, 2, 50, authorization);
  },
  notes: errorNotes,
};

/** Issues a token with the gateway's own config, then waits until the running gateway accepts it. */
async function issueToken(instance: Mlgate, user: string): Promise<string> {
  const issued = await runToEnd('mlgate token issue', process.execPath, ['--import', TSX, MLGATE_MAIN, 'token', 'issue', user, '--config', instance.configFile, '--ttl', '1d', '--name', 'bench'], { cwd: instance.dir });
  const token = issued.stdout.trim().split('\n').pop()?.trim();
  if (issued.code !== 0 || !token) throw new Error(`mlgate token issue failed: ${issued.output.trim().slice(-300)}`);
  // The gateway re-reads the token file within watchInterval (1 s), each worker process on its own
  // clock: one accepting it says little about the others, so wait out the interval after that.
  for (let i = 0; i < 50; i++) {
    const reply = await request(`${instance.url}/health`, { headers: { authorization: `Bearer ${token}` } });
    if (reply.status === 200) {
      await sleep(1500);
      return token;
    }
    await sleep(100);
  }
  throw new Error('the gateway did not accept the issued token within 5 s');
}
