// What mlgate's authorization step costs on MLflow's hottest call, runs/log-metric: the same
// gateway process, the same load (wrk -t2 -c50, keep-alive, the small JSON body), measured three
// ways one after the other within each round, with the upstream alone for reference:
//
//   on     the bench user, not an admin, with EDIT on the run's experiment from a group rule of the
//          policy file (lib/mlflow-fixture.ts): the body is read and parsed, the run resolved to its
//          experiment and the experiment's tags and name read (both from the resolver's caches
//          after the first request), owner, grants and rules decided.
//   admin  an admin of the policy file: the route is matched and the body read and parsed as for
//          anyone (admins' requests are checked for reserved tags and rewritten like everyone's),
//          but no resource is resolved or decided.
//   off    mlgate has no switch to turn authorization off. The nearest is the same POST to a path
//          outside MLflow's API, which the upstream answers as it answers log-metric: the
//          authorization step matches no MLflow route there and lets the request through without
//          reading its body (which is then streamed, as before authorization existed).
//          Authentication, the access log and forwarding are the same as for the other two.
//
// A benchmark of 403s would read as a fast gateway, so every round is checked: wrk must count no
// answer outside 2xx/3xx, and every request the gateway logged for the path must be a 200 for the
// expected user; for "on", with decision "allow" on the bench's experiment, so the check really
// resolved the run. The upstream's look-ups (runs/get, experiments/get) during the round are
// counted: the claim is that a log-metric loop makes none once the caches hold the run.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { BENCH_RESOURCE, LOG_METRIC, METRIC_BODY, NON_API_LOG_METRIC } from '../lib/mlflow-fixture.ts';
import { request } from '../lib/net.ts';
import type { TargetName } from '../lib/options.ts';
import { sleep } from '../lib/processes.ts';
import { runLoad } from '../load/http-load.ts';
import { scriptPath } from '../load/wrk.ts';
import { describePaired, paired, ratio, type Row } from '../report/rows.ts';
import { formatNumber, formatRatio } from '../report/table.ts';
import type { Endpoint } from '../servers/targets.ts';
import { requireSuccess, type BenchCase, type CaseContext, type Measurement, type Variant } from './bench-case.ts';

const THREADS = 2;
const CONNECTIONS = 50;

type VariantName = 'off' | 'admin' | 'on';
const VARIANTS: readonly (Variant & { name: VariantName })[] = [
  { name: 'off', label: 'authz off (non-MLflow path)' },
  { name: 'admin', label: 'authz on, admin' },
  { name: 'on', label: 'authz on, EDIT by rule' },
];

export const authzLogMetric: BenchCase = {
  name: 'authz-log-metric',
  unit: 'req/s',
  about: 'POST runs/log-metric, wrk -t2 -c50, through one gateway: "authz on" (non-admin, EDIT from a policy rule; run -> experiment from the cache), '
    + '"admin" (route and body checked, no resource look-up), "authz off" (the same POST to a path outside MLflow\'s API: there is no switch to turn it off); '
    + 'every answer must be a 200 (wrk and the access log)',
  flavor: 'auth',
  targets: ['direct', 'mlgate', 'mlgate-auto'], // and mlgate-baseline with --baseline (targetsOf)
  variants: (target) => (target === 'direct' ? undefined : VARIANTS),
  measure: (ctx, target, endpoint, variant) => measure(ctx, target, endpoint!, variant?.name as VariantName | undefined),
  notes(extra) {
    const parts: string[] = [];
    // The median over rounds: whole, or half-way between two.
    if (extra.lookups !== undefined) parts.push(`${extra.lookups % 1 ? extra.lookups.toFixed(1) : extra.lookups} upstream look-up${extra.lookups === 1 ? '' : 's'} per run`);
    if (extra.timeouts) parts.push(`${extra.timeouts} timeouts`);
    if (extra.socketErrors) parts.push(`${extra.socketErrors} socket errors`);
    return parts.join(', ');
  },
  compare,
};

let bodyChecked = false;
/** Gateways (by URL) that have had their unmeasured warm-up runs. */
const warmed = new Set<string>();
/**
 * Seconds of unmeasured load per way through a gateway before its first round. A gateway fresh
 * from start-up ran 30-50% slower in its first 10-15 s under load (the JIT, the heap sizing
 * itself) on the 2-core machine; without this, whichever way went first would be charged for it.
 */
const WARM_UP_S = 4;

interface Way {
  label: string;
  path: string;
  user: { name: string; authorization: string };
  url: string;
}

function wayThrough(ctx: CaseContext, endpoint: Endpoint, variant: VariantName | undefined): Way {
  const path = variant === 'off' ? NON_API_LOG_METRIC : LOG_METRIC;
  const user = variant === 'admin' ? ctx.ws.admin : { name: ctx.ws.user.name, authorization: ctx.ws.authorization };
  return { label: `${endpoint.label}${variant ? ` (${variant})` : ''}`, path, user, url: endpoint.url + path };
}

/**
 * Single POSTs that must each answer 200 (else the gateway's answer is the error): every worker
 * process (workers: auto) then holds the credential and the run's experiment before the clock
 * starts, as in steady use; new connections are dealt to the workers in turn.
 */
async function firstRequests(way: Way, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const reply = await request(way.url, { method: 'POST', headers: { authorization: way.user.authorization, 'content-type': 'application/json' }, body: METRIC_BODY, timeoutMs: 30_000 });
    if (reply.status !== 200) throw new Error(`${way.label}: POST ${way.path} as ${way.user.name} answered ${reply.status}: ${reply.body.slice(0, 300)}`);
  }
}

function loadOf(way: Way, durationS: number) {
  return { url: way.url, script: 'post-metric' as const, threads: THREADS, connections: CONNECTIONS, durationS, env: { BENCH_AUTHORIZATION: way.user.authorization } };
}

async function measure(ctx: CaseContext, target: TargetName, endpoint: Endpoint, variant: VariantName | undefined): Promise<Measurement> {
  // The warm-up sends METRIC_BODY, wrk the Lua script's literal: they must name the same run.
  if (!bodyChecked) {
    if (!readFileSync(scriptPath('post-metric'), 'utf8').includes(`'${METRIC_BODY}'`)) throw new Error('bench/load/lua/post-metric.lua does not send METRIC_BODY of bench/lib/mlflow-fixture.ts');
    bodyChecked = true;
  }
  const perWorker = target === 'mlgate-auto' ? 2 * availableParallelism() : 1;
  if (endpoint.mlgate && !warmed.has(endpoint.url)) {
    for (const other of VARIANTS) {
      const way = wayThrough(ctx, endpoint, other.name);
      await firstRequests(way, perWorker);
      const warm = await runLoad(loadOf(way, WARM_UP_S));
      requireSuccess(`${way.label}, unmeasured warm-up run`, warm.requests, warm.non2xx);
    }
    warmed.add(endpoint.url);
  }
  const way = wayThrough(ctx, endpoint, variant);
  const { label, path, user } = way;
  await firstRequests(way, perWorker);

  const accessLog = endpoint.mlgate?.accessLog;
  const logFrom = accessLog ? await settledSize(accessLog) : 0;
  const lookupsBefore = countLines(ctx.upstreamLookupLog);
  const result = await runLoad(loadOf(way, ctx.options.durationS));
  requireSuccess(label, result.requests, result.non2xx);
  if (result.requests === 0) throw new Error(`${label}: no answer within the run`);
  const lookups = countLines(ctx.upstreamLookupLog) - lookupsBefore;
  const logged200 = accessLog ? await checkAccessLog(label, accessLog, logFrom, path, user.name, variant, result.requests) : undefined;

  const { timeout, connect, read, write } = result.socketErrors;
  return {
    value: result.requestsPerS, p50Ms: result.p50Ms, p99Ms: result.p99Ms,
    extra: {
      requests: result.requests, timeouts: timeout, socketErrors: connect + read + write,
      ...(endpoint.mlgate ? { lookups } : {}),
      ...(logged200 !== undefined ? { logged200 } : {}),
    },
  };
}

/**
 * Reads the access-log lines the gateway wrote for this round's requests and refuses the round
 * unless each is a 200 for the expected user (and, with authorization in effect, an "allow" on the
 * bench's experiment), and the 200s are at least as many as wrk counted. Requests wrk cut off at
 * the end of the run are logged as aborted and not held against it. Returns the 200s logged.
 */
async function checkAccessLog(label: string, file: string, from: number, path: string, user: string, variant: VariantName | undefined, counted: number): Promise<number> {
  const to = await settledSize(file);
  let ok = 0;
  let aborted = 0;
  const wrong: string[] = [];
  for (const line of readRange(file, from, to).split('\n')) {
    if (!line.includes('"msg":"request"')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // not a JSON log line
    }
    if (entry.msg !== 'request' || entry.path !== path) continue;
    if (entry.aborted === true && (entry.status === 499 || entry.status === 200)) {
      aborted++;
      continue;
    }
    const problem = entry.status !== 200 ? `status ${String(entry.status)}`
      : entry.user !== user ? `user ${String(entry.user)}`
      : variant !== 'off' && entry.decision !== 'allow' ? `decision ${String(entry.decision)}`
      : variant === 'on' && entry.resource !== BENCH_RESOURCE ? `resource ${String(entry.resource)}`
      : undefined;
    if (problem) wrong.push(`${problem}: ${line.slice(0, 300)}`);
    else ok++;
  }
  if (wrong.length) {
    const expected = `a 200 for ${user}${variant === 'off' ? '' : ', decision allow'}${variant === 'on' ? ` on ${BENCH_RESOURCE}` : ''}`;
    throw new Error(`${label}: ${wrong.length} of ${ok + wrong.length} requests in the gateway's access log were not ${expected}; first: ${wrong[0]}`);
  }
  if (ok < counted) throw new Error(`${label}: the gateway logged ${ok} answers of 200 (and ${aborted} aborted) for ${path}, wrk counted ${counted}: the check cannot vouch for the rest`);
  return ok;
}

/** The file's size once the gateway's asynchronous logger has stopped writing to it. */
async function settledSize(file: string): Promise<number> {
  const size = () => (existsSync(file) ? statSync(file).size : 0);
  let last = size();
  for (let stable = 0, waited = 0; stable < 3 && waited < 5000; waited += 50) {
    await sleep(50);
    const now = size();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

function readRange(file: string, from: number, to: number): string {
  const buffer = Buffer.alloc(Math.max(0, to - from));
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, from + done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buffer.toString('utf8');
}

function countLines(file: string): number {
  if (!existsSync(file)) return 0;
  const text = readFileSync(file, 'utf8');
  return text === '' ? 0 : text.trimEnd().split('\n').length;
}

/**
 * Each gateway's rows side by side. The ratios are paired: each round measures the three ways back
 * to back, so a round's on/off is little affected by drift on the machine (other work, CPU
 * frequency); the median over rounds is given, with the lowest and highest round for the spread.
 * Also in the notes of the "on" and "admin" rows, and in their extras (JSON).
 */
function compare(rows: Row[]): string[] {
  const lines: string[] = [];
  const direct = rows.find((row) => row.target === 'direct' && row.status === 'ok');
  const show = (row: Row | undefined) => (row?.status === 'ok' ? `${formatNumber(row.value!)} req/s` : row ? row.status : 'not run');
  for (const target of ['mlgate', 'mlgate-baseline', 'mlgate-auto'] as const) {
    const find = (variant: VariantName) => rows.find((row) => row.target === target && row.variant === variant);
    const [off, admin, on] = [find('off'), find('admin'), find('on')];
    if (!off && !admin && !on) continue;
    const onOff = paired(on, off);
    const adminOff = paired(admin, off);
    const onAdmin = paired(on, admin);
    if (on && onOff) {
      on.extra.vsOff = onOff.median;
      if (onAdmin) on.extra.vsAdmin = onAdmin.median;
      on.notes = [`${formatRatio(onOff.median)} of off${onAdmin ? `, ${formatRatio(onAdmin.median)} of admin` : ''}`, on.notes].filter(Boolean).join('; ');
    }
    if (admin && adminOff) {
      admin.extra.vsOff = adminOff.median;
      admin.notes = [`${formatRatio(adminOff.median)} of off`, admin.notes].filter(Boolean).join('; ');
    }
    lines.push(`${target.padEnd(15)} authz on ${show(on)}, off ${show(off)}: on/off ${describePaired(onOff)};`
      + ` admin ${show(admin)}: admin/off ${describePaired(adminOff)}${direct?.value !== undefined ? `; direct ${formatNumber(direct.value)} req/s` : ''}`);
  }
  if (lines.length) {
    lines.unshift('authz-log-metric: the same gateway with authorization in effect (non-admin, EDIT by a policy rule), as an admin, and bypassed (a path outside MLflow\'s API);'
      + ' req/s are medians, ratios the median of each round\'s (lowest-highest round):');
  }
  // --baseline: each way through this checkout's gateway against the same way through the baseline's, measured in the same rounds.
  const against = (variant: VariantName) => {
    const mine = rows.find((row) => row.target === 'mlgate' && row.variant === variant);
    const base = rows.find((row) => row.target === 'mlgate-baseline' && row.variant === variant);
    if (!base) return undefined;
    const ofMedians = mine?.value !== undefined && base.value !== undefined ? ratio(mine.value, base.value) : undefined;
    return `  ${VARIANTS.find((v) => v.name === variant)!.label}: ${show(mine)} vs ${show(base)} = ${formatRatio(ofMedians)} of baseline; by round ${describePaired(paired(mine, base))}`;
  };
  const baselineLines = (['on', 'admin', 'off'] as const).flatMap((variant) => against(variant) ?? []);
  if (baselineLines.length) {
    const label = rows.find((row) => row.target === 'mlgate-baseline')!.label.replace(/:.*/, '');
    lines.push(`authz-log-metric, mlgate (this checkout) against ${label}, each way: medians, their ratio, and the median of each round's ratio (lowest-highest round):`, ...baselineLines);
  }
  return lines;
}
