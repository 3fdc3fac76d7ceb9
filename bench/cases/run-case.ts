// Runs one case: its targets in turn within each round (so slow drift on the machine spreads
// over all targets instead of favouring one), each failure recorded and the run carried on.
import { request } from '../lib/net.ts';
import type { TargetName } from '../lib/options.ts';
import { aggregate, skippedRow, type Row } from '../report/rows.ts';
import { formatMs, formatNumber } from '../report/table.ts';
import { Unavailable, type Endpoint } from '../servers/targets.ts';
import { targetsOf, type BenchCase, type CaseContext, type Measurement, type Variant } from './bench-case.ts';

export async function runCase(benchCase: BenchCase, ctx: CaseContext): Promise<Row[]> {
  const startedAt = Date.now();
  const targets = targetsOf(benchCase).filter((t) => ctx.options.targets.includes(t));
  // A row per target, or per target and variant for cases that measure several through one target.
  const variantsOf = (target: TargetName): readonly (Variant | undefined)[] => benchCase.variants?.(target) ?? [undefined];
  const skip = await benchCase.skipReason?.(ctx).catch((err: Error) => `could not tell whether it can run: ${err.message}`);
  if (skip) {
    ctx.log(`${benchCase.name}: skipped (${skip})`);
    return targets.flatMap((target) => variantsOf(target).map((variant) => skippedRow(benchCase, target, skip, labelOf(target, variant), variant?.name)));
  }

  // Start what the case needs first, so start-up never happens inside a measured round.
  const endpoints = new Map<TargetName, Endpoint | undefined>();
  const rows = new Map<string, Row>();
  for (const target of targets) {
    if (benchCase.flavor === 'own') {
      endpoints.set(target, undefined);
      continue;
    }
    try {
      endpoints.set(target, await ctx.targets.endpoint(target, benchCase.flavor));
    } catch (err) {
      for (const variant of variantsOf(target)) {
        const row = skippedRow(benchCase, target, (err as Error).message, labelOf(target, variant), variant?.name);
        if (!(err instanceof Unavailable)) row.status = 'error';
        rows.set(slotKey(target, variant), row);
      }
      const failed = !(err instanceof Unavailable);
      ctx.log(`${benchCase.name} ${target}: ${failed ? 'failed to start' : 'skipped'}: ${(err as Error).message}`);
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
  const measured = new Map<string, { target: TargetName; variant?: Variant; label: string; results: Row['rounds'] }>();
  for (let round = 1; round <= rounds; round++) {
    for (const [target, endpoint] of endpoints) {
      // Variants take turns at going first, so none is always the one measured on a colder gateway.
      const variants = variantsOf(target);
      for (const variant of variants.map((_, i) => variants[(i + round - 1) % variants.length])) {
        const key = slotKey(target, variant);
        if (rows.has(key)) continue; // skipped, or unavailable in an earlier round
        const label = labelOf(endpoint?.label ?? target, variant);
        const slot = measured.get(key) ?? { target, variant, label, results: [] };
        measured.set(key, slot);
        try {
          const m = await benchCase.measure(ctx, target, endpoint, variant);
          slot.results.push(m);
          ctx.log(`${benchCase.name} ${label} round ${round}/${rounds}: ${describe(m, benchCase.unit)}`);
        } catch (err) {
          if (err instanceof Unavailable) {
            rows.set(key, skippedRow(benchCase, target, err.message, label, variant?.name));
            ctx.log(`${benchCase.name} ${label}: skipped: ${err.message}`);
            continue;
          }
          slot.results.push({ error: (err as Error).message });
          ctx.log(`${benchCase.name} ${label} round ${round}/${rounds}: ERROR ${(err as Error).message}`);
        }
      }
    }
  }
  for (const [key, slot] of measured) {
    if (!rows.has(key)) rows.set(key, aggregate(benchCase, slot.target, slot.label, slot.results, slot.variant?.name));
  }
  ctx.log(`${benchCase.name}: done in ${Math.round((Date.now() - startedAt) / 1000)} s`);
  return targets.flatMap((target) => variantsOf(target).flatMap((variant) => rows.get(slotKey(target, variant)) ?? []));
}

function slotKey(target: TargetName, variant: Variant | undefined): string {
  return variant ? `${target}/${variant.name}` : target;
}

function labelOf(targetLabel: string, variant: Variant | undefined): string {
  return variant ? `${targetLabel}: ${variant.label}` : targetLabel;
}

function describe(m: Measurement, unit: string): string {
  const latency = m.p50Ms === undefined ? '' : `, p50 ${formatMs(m.p50Ms)}, p99 ${formatMs(m.p99Ms)}`;
  return `${formatNumber(m.value)} ${unit}${latency}`;
}
