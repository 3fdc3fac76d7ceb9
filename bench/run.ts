// npm run bench -- [--cases a,b] [--targets direct,nginx,caddy,mlgate,mlgate-auto] [--rounds N] [--duration 3s] [--keep] [--baseline rev]
//
// Starts, on 127.0.0.1 only, an MLflow-shaped upstream, nginx and Caddy (where installed) set up as
// users set them up, and mlgate from this checkout; runs each case against each target for a few
// rounds; prints a table of medians and the goals as PASS/MISS; writes the same to
// bench/results/<timestamp>.json. Everything it started is stopped by pid at the end, on Ctrl-C
// and on errors, and its temporary directory removed. With --baseline, another revision's build runs
// beside it as mlgate-baseline (lib/baseline.ts), from a git worktree removed at the end too.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ALL_CASES } from './cases/all-cases.ts';
import { targetsOf, type CaseContext } from './cases/bench-case.ts';
import { runCase } from './cases/run-case.ts';
import { buildBaseline, removeBaseline, resolveBaseline, type Baseline } from './lib/baseline.ts';
import { describeEnvironment, renderEnvironment } from './lib/environment.ts';
import { parseOptions, USAGE, type Options } from './lib/options.ts';
import { killAllNow, stopAll } from './lib/processes.ts';
import { runToEnd } from './lib/processes.ts';
import { REPO_ROOT, createWorkspace, hasCommand, type Workspace } from './lib/workspace.ts';
import { AUTOCANNON_NOTE, loadGenerator } from './load/http-load.ts';
import { checkGoals, renderGoals } from './report/goals.ts';
import { addRatios, type Row } from './report/rows.ts';
import { renderTable } from './report/table.ts';
import { profileGatewaysInto } from './servers/mlgate.ts';
import { instanceFor, Targets, type InstanceKey } from './servers/targets.ts';
import { startUpstream } from './servers/upstream.ts';

const log = (line: string) => process.stderr.write(`  ${line}\n`);

let options: Options;
try {
  options = parseOptions(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}

let workspace: Workspace | undefined;
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await stopAll(5000);
    // Even with --keep: the repository's list of worktrees must not go on naming a temporary directory.
    if (options.baseline && workspace) await removeBaseline(workspace);
    if (options.keep && workspace) process.stderr.write(`bench: kept ${workspace.dir}\n`);
    else await workspace?.remove();
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}: stopping everything it started\n`);
    void cleanUp().finally(() => process.exit(130));
  });
}
// Should the runner die some other way, no server it started may outlive it.
process.on('exit', killAllNow);

const started = Date.now();
try {
  await main(options);
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}

async function main(opts: Options): Promise<void> {
  const environment = await describeEnvironment();
  process.stdout.write(`mlgate benchmark\n${renderEnvironment(environment)}\n`);
  const generator = await loadGenerator();
  if (generator !== 'wrk') process.stdout.write(`note: ${generator === 'none' ? AUTOCANNON_NOTE : 'wrk not found: using autocannon in-process (lower numbers)'}\n`);
  if (!(await hasCommand('curl'))) process.stdout.write('note: curl not found: the stream cases will fail\n');
  const installed = { nginx: environment.nginx !== undefined, caddy: environment.caddy !== undefined };
  const baselineCommit = opts.baseline === undefined ? undefined : await resolveBaseline(opts.baseline);
  const cases = opts.cases.map((name) => ALL_CASES[name]);
  if (opts.cpuProf) {
    await mkdir(opts.cpuProf, { recursive: true });
    profileGatewaysInto(opts.cpuProf);
    process.stdout.write(`note: mlgate runs with --cpu-prof (profiles in ${opts.cpuProf}); its numbers are slower than usual\n`);
  }
  process.stdout.write(`run       cases ${opts.cases.join(',')}; targets ${opts.targets.join(',')}; ${opts.rounds} rounds of ${opts.durationS}s; expect about ${Math.max(1, Math.round(estimateSeconds(opts) / 60))} min\n\n`);

  // The gateway runs compiled, as `npm start` runs it (tsx's loader thread alone costs ~30 MB).
  const build = await runToEnd('npm run build', 'npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, timeoutMs: 120_000 });
  if (build.code !== 0) throw new Error(`npm run build failed: ${build.output.trim().slice(-500)}`);
  workspace = await createWorkspace();
  let baseline: Baseline | undefined;
  if (baselineCommit) {
    baseline = await buildBaseline(workspace, baselineCommit);
    process.stdout.write(`baseline  ${baselineCommit} (--baseline ${opts.baseline}), built in a worktree: ${baseline.label} runs as mlgate does, in the same rounds\n`);
  }
  const upstream = await startUpstream(workspace, installed.nginx);
  process.stdout.write(`upstream  ${upstream.kind}; users' hashes: bcrypt cost 12 via ${workspace.hashedWith}\n`);
  process.stdout.write('logging   mlgate log.level info (JSON access log to a file), nginx and Caddy access logs to files: every target pays for its log\n\n');
  const targets = new Targets(workspace, upstream, installed, baseline);
  const ctx: CaseContext = { ws: workspace, options: opts, targets, upstreamUrl: upstream.url, upstreamLookupLog: upstream.lookupLog, log };

  const rows: Row[] = [];
  for (const [i, benchCase] of cases.entries()) {
    log(`${benchCase.name}: ${benchCase.about}`);
    rows.push(...(await runCase(benchCase, ctx)));
    await targets.release(stillNeeded(cases.slice(i + 1), opts));
  }
  addRatios(rows);
  // Comparisons within a case (e.g. authorization on against off), into the notes before the table is drawn.
  const comparisons = cases.flatMap((benchCase) => benchCase.compare?.(rows.filter((row) => row.case === benchCase.name)) ?? []);
  const goals = checkGoals(rows, opts.rounds);

  process.stdout.write(`\n${renderTable(rows)}\n\n`);
  for (const benchCase of cases) process.stdout.write(`${benchCase.name.padEnd(15)} ${benchCase.about}\n`);
  if (comparisons.length) process.stdout.write(`\n${comparisons.join('\n')}\n`);
  if (goals.length) process.stdout.write(`\ngoals (medians of ${opts.rounds} round${opts.rounds === 1 ? '' : 's'}, ratios from this run)\n${renderGoals(goals)}\n`);

  const seconds = (Date.now() - started) / 1000;
  const file = await writeResults({ startedAt: new Date(started).toISOString(), seconds, environment, options: opts, ...(baselineCommit ? { baselineCommit } : {}), upstream: upstream.kind, rows, comparisons, goals });
  process.stdout.write(`\nfinished in ${Math.round(seconds)} s; results in ${file}\n`);
  // The load average before any of the bench's own processes ran: other work on the machine.
  if (environment.loadAverage > 0.5) {
    process.stdout.write('note: the machine had other work running (see the load averages): numbers are noisier than usual\n');
  }
}

function stillNeeded(remaining: typeof ALL_CASES[keyof typeof ALL_CASES][], opts: Options): Set<InstanceKey> {
  const keep = new Set<InstanceKey>();
  for (const benchCase of remaining) {
    if (benchCase.flavor === 'own') continue;
    for (const target of targetsOf(benchCase)) {
      const key = opts.targets.includes(target) ? instanceFor(target, benchCase.flavor) : undefined;
      if (key && key !== 'upstream') keep.add(key);
    }
  }
  return keep;
}

/** A rough forecast, printed so nobody wonders whether a 5-minute run has hung. */
function estimateSeconds(opts: Options): number {
  const d = opts.durationS;
  const perRun: Record<string, number> = {
    'small-basic': d + 0.7, 'small-bearer': d + 0.7, 'small-noauth': d + 0.5, 'latency-1conn': d + 0.7, 'authz-log-metric': d + 0.9 + 4 / opts.rounds, // + a 4 s unmeasured run per gateway row
    'tls-handshake': d + 0.9, 'stream-up': 2.5, 'stream-down': 2.2, 'guessing-flood': d + 6.5, 'idle-rss': 35,
    'shared-state': 2 * d + 1 + 15 / (4 * opts.rounds), // + start-up and warm-up of its three gateways, once
    forwarders: (d + 0.7 + 2.5 + 2.2) / 3 + 14 / (6 * opts.rounds), // + start-up and warm-up of its two gateways, once
  };
  let total = 10; // start-up of the servers
  for (const name of opts.cases) {
    const benchCase = ALL_CASES[name];
    const count = targetsOf(benchCase).filter((t) => opts.targets.includes(t)).reduce((sum, t) => sum + (benchCase.variants?.(t)?.length ?? 1), 0);
    total += count * opts.rounds * (perRun[name] ?? d);
  }
  return total;
}

async function writeResults(results: Record<string, unknown>): Promise<string> {
  const dir = join(REPO_ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
