// The performance goals (issue 3's, as issue 18 raised them), checked against this run's medians: PASS, MISS, or n/a when
// a row needed for the comparison is missing (skipped, failed, or not selected).
import type { TargetName } from '../lib/options.ts';
import { ratio, type Row } from './rows.ts';
import { formatMs, formatNumber, formatRatio } from './table.ts';

interface Goal {
  verdict: 'PASS' | 'MISS' | 'n/a';
  text: string;
}

const GATEWAYS: TargetName[] = ['mlgate', 'mlgate-auto'];

export function checkGoals(rows: Row[], rounds: number): Goal[] {
  const find = (caseName: string, target: TargetName) => rows.find((r) => r.case === caseName && r.target === target && r.status === 'ok');
  const present = (caseName: string, target: TargetName) => rows.some((r) => r.case === caseName && r.target === target);
  const goals: Goal[] = [];

  /** Gateway value / other target's value in the same case, at least `min`. */
  const atLeast = (caseName: string, other: TargetName, minimum: number | Partial<Record<TargetName, number>>, otherLabel: string) => {
    for (const gateway of GATEWAYS) {
      const min = typeof minimum === 'number' ? minimum : minimum[gateway];
      if (min === undefined || !present(caseName, gateway)) continue;
      const mine = find(caseName, gateway);
      const theirs = find(caseName, other);
      const goal = `${caseName}: ${gateway} >= ${min}x ${otherLabel}`;
      if (mine?.value === undefined || theirs?.value === undefined) {
        goals.push({ verdict: 'n/a', text: `${goal} (${!mine ? `no ${gateway} result` : `no ${otherLabel} result`})` });
        continue;
      }
      let r = ratio(mine.value, theirs.value);
      let how = `${formatNumber(mine.value)} vs ${formatNumber(theirs.value)} ${mine.unit} = ${formatRatio(r)}`;
      // nginx auth_basic can answer none of 50 concurrent requests within a short run (its event loop
      // does every queued bcrypt check before it proxies any); its one-connection rate bounds it instead.
      const single = theirs.value === 0 && other === 'nginx' ? find('latency-1conn', 'nginx') : undefined;
      if (single?.value) {
        r = mine.value / single.value;
        how += ` (nginx answered nothing within a run; against its one-connection rate of ${formatNumber(single.value)} req/s from latency-1conn: ${formatRatio(r)})`;
      }
      goals.push({ verdict: r >= min ? 'PASS' : 'MISS', text: `${goal}: ${how}` });
    }
  };
  /** A per-gateway number below a limit. */
  const below = (caseName: string, what: string, limit: number, pick: (row: Row) => number | undefined, show: (v: number) => string, gateways = GATEWAYS) => {
    for (const gateway of gateways) {
      if (!present(caseName, gateway)) continue;
      const row = find(caseName, gateway);
      const value = row ? pick(row) : undefined;
      const goal = `${caseName}: ${gateway} ${what} <= ${show(limit)}`;
      if (value === undefined) goals.push({ verdict: 'n/a', text: `${goal} (no result)` });
      else goals.push({ verdict: value <= limit ? 'PASS' : 'MISS', text: `${goal}: ${show(value)}` });
    }
  };
  const mb = (v: number) => `${v.toFixed(0)} MB`;

  atLeast('small-basic', 'nginx', 100, 'nginx auth_basic');
  // Issue 18: the default (workers: auto) at least Caddy's rate, one process at least 0.8x.
  atLeast('small-basic', 'caddy', { 'mlgate-auto': 1.0, mlgate: 0.8 }, 'caddy basicauth');
  below('small-basic', 'CPU per request (one process)', 100, (row) => row.extra.cpuUsPerRequest, (v) => `${v.toFixed(0)} µs`, ['mlgate']);
  atLeast('small-noauth', 'nginx', 0.5, 'nginx without auth');
  below('latency-1conn', 'p50 added over direct', 0.2, (row) => row.p50AddedMs, (v) => formatMs(v));
  for (const caseName of ['stream-up', 'stream-down']) {
    atLeast(caseName, 'nginx', 1.0, 'nginx MB/s');
    below(caseName, 'peak RSS during the transfer', 150, (row) => row.extra.peakRssMB, mb);
  }
  below('guessing-flood', 'legitimate p99', 50, (row) => row.p99Ms, (v) => formatMs(v));
  below('idle-rss', 'RSS per process, idle', 70, (row) => row.extra.idleMaxMB, mb);
  below('idle-rss', 'RSS per process with 1,000 idle connections', 100, (row) => row.extra.settledMaxMB, mb);
  // Issue 12: 2,000 slow unauthenticated connections must not take the gateway from a signed-in user.
  below('slow-clients', "signed-in user's p99 under 2,000 slow connections", 100, (row) => row.p99Ms, (v) => formatMs(v));
  below('slow-clients', 'peak RSS under 2,000 slow connections', 300, (row) => row.extra.peakRssMB, mb);

  if (rounds < 3) for (const goal of goals) if (goal.verdict !== 'n/a') goal.text += ' (fewer than 3 rounds: indicative only)';
  return goals;
}

export function renderGoals(goals: Goal[]): string {
  return goals.map((goal) => `${goal.verdict.padEnd(4)}  ${goal.text}`).join('\n');
}
