// What a benchmark case is: which targets, which set-up of them, and how one round is measured.
import type { CaseName, Options, TargetName } from '../lib/options.ts';
import type { Workspace } from '../lib/workspace.ts';
import type { Row } from '../report/rows.ts';
import type { Endpoint, Flavor, Targets } from '../servers/targets.ts';

export interface Measurement {
  /** The headline number, in the case's unit. */
  value: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Further numbers kept in the JSON and summarised in the notes; keys starting "peak" take the max over rounds, the rest the median. */
  extra?: Record<string, number>;
}

export interface CaseContext {
  ws: Workspace;
  options: Options;
  targets: Targets;
  /** Where the gateways forward to, for cases that start their own. */
  upstreamUrl: string;
  /** The upstream's log of runs/get and experiments/get answered: the gateways' authorization look-ups. */
  upstreamLookupLog: string;
  /** A progress line on stderr (the table goes to stdout). */
  log(line: string): void;
}

/** One of several rows a case measures through the same target (e.g. one gateway, authorization in effect or not). */
export interface Variant {
  /** Its key in the results JSON. */
  name: string;
  /** Added to the target's label in the table. */
  label: string;
}

export interface BenchCase {
  name: CaseName;
  /** e.g. "req/s", "handshakes/s", "MB/s", "MB" (memory in 10^6 bytes, as the goals are stated). */
  unit: string;
  /** One line printed under the table: what was measured and how. */
  about: string;
  /** The set-up of each target to measure; "own" means the case starts what it measures itself. */
  flavor: Flavor | 'own';
  targets: readonly TargetName[];
  /** Rounds for this case when not the run's --rounds. */
  rounds?: (options: Options) => number;
  /** Why the whole case cannot run here, if it cannot. */
  skipReason?(ctx: CaseContext): Promise<string | undefined>;
  /** Several rows for this target, measured one after the other within each round; undefined (or no method): one row. */
  variants?(target: TargetName): readonly Variant[] | undefined;
  /** One round against one target (and variant); throws to record that round as failed. */
  measure(ctx: CaseContext, target: TargetName, endpoint: Endpoint | undefined, variant?: Variant): Promise<Measurement>;
  /** The notes column from the aggregated extras. */
  notes?(extra: Record<string, number>): string;
  /**
   * Once the whole run's ratios are in (report/rows.ts addRatios): comparisons between this case's
   * rows, added to their notes; the lines returned are printed under the table and kept in the JSON.
   */
  compare?(rows: Row[]): string[];
}

/**
 * The targets a case runs: its own, with mlgate-baseline (--baseline) right after mlgate wherever
 * mlgate is one, so each round measures the two back to back. Not in cases that start their own
 * gateways ("own"): those run this checkout's build only.
 */
export function targetsOf(benchCase: BenchCase): readonly TargetName[] {
  if (benchCase.flavor === 'own') return benchCase.targets;
  return benchCase.targets.flatMap((target): TargetName[] => (target === 'mlgate' ? ['mlgate', 'mlgate-baseline'] : [target]));
}

/**
 * Refuses a result made of error answers: 401s are fast, and would read as a great result. No
 * answer at all is a result, not an error (nginx checking bcrypt per request may answer none).
 */
export function requireSuccess(what: string, requests: number, non2xx: number): void {
  if (non2xx > 0) throw new Error(`${what}: ${non2xx} of ${requests} answers were not 2xx (check the credentials and the target)`);
}
