// One row per case and target: the rounds as measured, their medians, and the ratios to direct
// and to nginx from the same run (and mlgate's to --baseline's build).
import type { BenchCase, Measurement } from '../cases/bench-case.ts';
import type { CaseName, TargetName } from '../lib/options.ts';
import { median } from '../lib/stats.ts';
import { formatMs, formatRatio } from './table.ts';

export interface Row {
  case: CaseName;
  target: TargetName;
  /** Which of the case's variants (BenchCase.variants), for cases with several rows per target. */
  variant?: string;
  label: string;
  unit: string;
  status: 'ok' | 'error' | 'skipped';
  /** Why the row was skipped, or the error (of the last failed round). */
  reason?: string;
  rounds: (Measurement | { error: string })[];
  value?: number;
  p50Ms?: number;
  p99Ms?: number;
  extra: Record<string, number>;
  vsDirect?: number;
  vsNginx?: number;
  /** mlgate rows with --baseline: over mlgate-baseline's row of the same case and variant (round by round in the notes). */
  vsBaseline?: number;
  /** p50 minus direct's p50 in the same case: the latency the proxy adds. */
  p50AddedMs?: number;
  notes: string;
}

export function skippedRow(benchCase: BenchCase, target: TargetName, reason: string, label: string = target, variant?: string): Row {
  return { case: benchCase.name, target, ...(variant ? { variant } : {}), label, unit: benchCase.unit, status: 'skipped', reason, rounds: [], extra: {}, notes: '' };
}

/** Medians over the rounds that worked; a row with no working round is an error. */
export function aggregate(benchCase: BenchCase, target: TargetName, label: string, rounds: Row['rounds'], variant?: string): Row {
  const ok = rounds.filter((r): r is Measurement => !('error' in r));
  const failed = rounds.filter((r): r is { error: string } => 'error' in r);
  const row: Row = { case: benchCase.name, target, ...(variant ? { variant } : {}), label, unit: benchCase.unit, status: ok.length ? 'ok' : 'error', rounds, extra: {}, notes: '' };
  if (failed.length) row.reason = failed[failed.length - 1]!.error;
  if (!ok.length) return row;
  row.value = median(ok.map((m) => m.value));
  row.p50Ms = median(ok.flatMap((m) => (m.p50Ms === undefined || Number.isNaN(m.p50Ms) ? [] : [m.p50Ms])));
  row.p99Ms = median(ok.flatMap((m) => (m.p99Ms === undefined || Number.isNaN(m.p99Ms) ? [] : [m.p99Ms])));
  const keys = new Set(ok.flatMap((m) => Object.keys(m.extra ?? {})));
  for (const key of keys) {
    const values = ok.flatMap((m) => (m.extra?.[key] === undefined ? [] : [m.extra[key]!]));
    row.extra[key] = key.startsWith('peak') ? Math.max(...values) : median(values)!;
  }
  const notes = benchCase.notes?.(row.extra) ?? '';
  const failures = failed.length ? `${failed.length}/${rounds.length} rounds failed: ${failed[failed.length - 1]!.error}` : '';
  row.notes = [notes, failures].filter(Boolean).join('; ');
  return row;
}

/** Ratios within each case: higher is better for every unit except memory. */
export function addRatios(rows: Row[]): void {
  for (const row of rows) {
    if (row.status !== 'ok' || row.value === undefined || row.unit === 'MB') continue;
    const same = (target: TargetName) => rows.find((r) => r.case === row.case && r.target === target && r.status === 'ok');
    const direct = same('direct');
    const nginx = same('nginx');
    // A target that answered nothing in the window (nginx auth_basic can) makes the ratio infinite.
    if (direct?.value !== undefined) row.vsDirect = ratio(row.value, direct.value);
    if (nginx?.value !== undefined) row.vsNginx = ratio(row.value, nginx.value);
    const baseline = row.target === 'mlgate' ? rows.find((r) => r.case === row.case && r.target === 'mlgate-baseline' && r.variant === row.variant && r.status === 'ok') : undefined;
    if (baseline?.value !== undefined) {
      row.vsBaseline = ratio(row.value, baseline.value);
      // The two took turns within each round, so each round's ratio shares that round's drift: their spread shows what one run can tell.
      const byRound = paired(row, baseline);
      if (byRound) row.notes = [`vs baseline by round ${describePaired(byRound)}`, row.notes].filter(Boolean).join('; ');
    }
    if (row.target !== 'direct' && row.p50Ms !== undefined && direct?.p50Ms !== undefined && Number.isFinite(row.p50Ms)) {
      row.p50AddedMs = row.p50Ms - direct.p50Ms;
      if (row.case === 'latency-1conn') row.notes = [`p50 ${row.p50AddedMs >= 0 ? '+' : '-'}${formatMs(Math.abs(row.p50AddedMs))} over direct`, row.notes].filter(Boolean).join('; ');
    }
  }
}

export function ratio(value: number, base: number): number {
  return base === 0 ? (value === 0 ? 1 : Infinity) : value / base;
}

/**
 * This row's value over the other's, round by round (the rounds both measured): the median, and the
 * lowest and highest round for the spread. Rows measured back to back within each round share the
 * round's drift on the machine, which a ratio of medians would not cancel.
 */
export function paired(row: Row | undefined, base: Row | undefined): { median: number; min: number; max: number } | undefined {
  if (row?.status !== 'ok' || base?.status !== 'ok') return undefined;
  const ratios: number[] = [];
  for (const [i, m] of row.rounds.entries()) {
    const b = base.rounds[i];
    if (!('error' in m) && b && !('error' in b)) ratios.push(ratio(m.value, b.value));
  }
  const mid = median(ratios);
  return mid === undefined ? undefined : { median: mid, min: Math.min(...ratios), max: Math.max(...ratios) };
}

/** A paired() ratio as "0.95x (0.80x-1.10x)": the median, then the lowest and highest round. */
export function describePaired(r: ReturnType<typeof paired>): string {
  if (!r) return '-';
  return formatRatio(r.min) === formatRatio(r.max) ? formatRatio(r.median) : `${formatRatio(r.median)} (${formatRatio(r.min)}-${formatRatio(r.max)})`;
}
