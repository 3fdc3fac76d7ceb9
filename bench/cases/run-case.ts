// Runs one case: its targets in turn within each round (so slow drift on the machine spreads
// over all targets instead of favouring one), each failure recorded and the run carried on.
import { request } from '../lib/net.ts';
import type { TargetName } from '../lib/options.ts';
import { aggregate, skippedRow, type Row } from '../report/rows.ts';
import { formatMs, formatNumber } from '../report/table.ts';
import { Unavailable, type Endpoint } from '../servers/targets.ts';
import type { BenchCase, CaseContext, Measurement } from './bench-case.ts';

export async function runCase(benchCase: BenchCase, ctx: CaseContext): Promise<Row[]> {
  const startedAt = Date.now();
  const targets = benchCase.targets.filter((t) => ctx.options.targets.includes(t));
  const skip = await benchCase.skipReason?.(ctx).catch((err: Error) => `could not tell whether it can run: ${err.message}`);
  if (skip) {
    ctx.log(`${benchCase.name}: skipped (${skip})`);
    return targets.map((target) => skippedRow(benchCase, target, skip));
  }

  // Start what the case needs first, so start-up never happens inside a measured round.
  const endpoints = new Map<TargetName, Endpoint | undefined>();
  const rows = new Map<TargetName, Row>();
  for (const target of targets) {
    if (benchCase.flavor === 'own') {
      endpoints.set(target, undefined);
      continue;
    }
    try {
      endpoints.set(target, await ctx.targets.endpoint(target, benchCase.flavor));
    } catch (err) {
      const row = skippedRow(benchCase, target, (err as Error).message);
      if (!(err instanceof Unavailable)) row.status = 'error';
      rows.set(target, row);
      ctx.log(`${benchCase.name} ${target}: ${row.status === 'error' ? 'failed to start' : 'skipped'}: ${(err as Error).message}`);
    }
  }

  // One request first, so credential caches (mlgate's, Caddy's) hold the bench user's credential
  // as they would in steady use; 50 connections arriving with an unverified credential would
  // otherwise measure 50 concurrent bcrypt checks.
  for (const endpoint of endpoints.values()) {
    if (!endpoint) continue;
    await request(`${endpoint.url}/health`, { headers: { authorization: ctx.ws.authorization }, timeoutMs: 60_000 })
      .catch((err: Error) => ctx.log(`${benchCase.name} ${endpoint.label}: warm-up request failed: ${err.message}`));
  }

  const rounds = benchCase.rounds?.(ctx.options) ?? ctx.options.rounds;
  const measured = new Map<TargetName, Row['rounds']>();
  for (let round = 1; round <= rounds; round++) {
    for (const [target, endpoint] of endpoints) {
      if (rows.has(target)) continue; // skipped, or unavailable in an earlier round
      const results = measured.get(target) ?? [];
      measured.set(target, results);
      const label = endpoint?.label ?? target;
      try {
        const m = await benchCase.measure(ctx, target, endpoint);
        results.push(m);
        ctx.log(`${benchCase.name} ${label} round ${round}/${rounds}: ${describe(m, benchCase.unit)}`);
      } catch (err) {
        if (err instanceof Unavailable) {
          rows.set(target, skippedRow(benchCase, target, err.message, label));
          ctx.log(`${benchCase.name} ${label}: skipped: ${err.message}`);
          continue;
        }
        results.push({ error: (err as Error).message });
        ctx.log(`${benchCase.name} ${label} round ${round}/${rounds}: ERROR ${(err as Error).message}`);
      }
    }
  }
  for (const [target, results] of measured) {
    if (!rows.has(target)) rows.set(target, aggregate(benchCase, target, endpoints.get(target)?.label ?? target, results));
  }
  ctx.log(`${benchCase.name}: done in ${Math.round((Date.now() - startedAt) / 1000)} s`);
  return targets.flatMap((target) => rows.get(target) ?? []);
}

function describe(m: Measurement, unit: string): string {
  const latency = m.p50Ms === undefined ? '' : `, p50 ${formatMs(m.p50Ms)}, p99 ${formatMs(m.p99Ms)}`;
  return `${formatNumber(m.value)} ${unit}${latency}`;
}
