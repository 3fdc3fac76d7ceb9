// The results as a plain-text table for the terminal.
import type { Row } from './rows.ts';

export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return '-';
  if (ms === Infinity) return 'no answer';
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined) return '-';
  if (ratio === Infinity) return 'inf';
  if (ratio >= 100) return `${Math.round(ratio).toLocaleString('en-US')}x`;
  if (ratio >= 10) return `${ratio.toFixed(1)}x`;
  return `${ratio.toFixed(2)}x`;
}

export function renderTable(rows: Row[]): string {
  // Only with --baseline: mlgate against the baseline's build, measured in the same rounds.
  const withBaseline = rows.some((row) => row.target === 'mlgate-baseline');
  const header = ['case', 'target', 'result (median)', 'p50', 'p99', 'vs direct', 'vs nginx', ...(withBaseline ? ['vs baseline'] : []), 'notes'];
  const cells = rows.map((row) => {
    if (row.status !== 'ok') {
      const what = row.status === 'skipped' ? `skipped: ${row.reason}` : `ERROR: ${row.reason}`;
      return [row.case, row.label, row.status === 'skipped' ? 'skipped' : 'error', '', '', '', '', ...(withBaseline ? [''] : []), what];
    }
    return [
      row.case, row.label, `${formatNumber(row.value!)} ${row.unit}`, formatMs(row.p50Ms), formatMs(row.p99Ms),
      formatRatio(row.vsDirect), formatRatio(row.vsNginx), ...(withBaseline ? [row.target === 'mlgate' ? formatRatio(row.vsBaseline) : ''] : []), row.notes,
    ];
  });
  // The notes column is last and left ragged, so long notes do not widen every row.
  const widths = header.slice(0, -1).map((title, i) => Math.max(title.length, ...cells.map((c) => c[i]!.length)));
  // Numbers (result to the last ratio) right-aligned.
  const line = (values: string[]) => values.map((v, i) => (i < widths.length ? (i >= 2 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)) : v)).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w)).concat('-----'))];
  let previous = '';
  for (const [i, c] of cells.entries()) {
    if (previous && rows[i]!.case !== previous) out.push('');
    previous = rows[i]!.case;
    out.push(line(c));
  }
  return out.join('\n');
}
