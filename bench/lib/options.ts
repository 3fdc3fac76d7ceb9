// The command line: npm run bench -- [--cases a,b] [--targets x,y] [--rounds N] [--duration 5s] [--baseline rev]
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const CASE_NAMES = [
  'small-basic', 'small-bearer', 'small-noauth', 'latency-1conn', 'authz-log-metric', 'tls-handshake',
  'stream-up', 'stream-down', 'guessing-flood', 'idle-rss', 'slow-clients', 'shared-state',
  'forwarders',
] as const;
export type CaseName = (typeof CASE_NAMES)[number];

export const TARGET_NAMES = ['direct', 'nginx', 'caddy', 'mlgate', 'mlgate-baseline', 'mlgate-auto'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Options {
  cases: CaseName[];
  targets: TargetName[];
  rounds: number;
  /** Seconds each load run lasts. */
  durationS: number;
  /** Leave the temporary directory (configs, access logs, error logs) for inspection. */
  keep: boolean;
  /** A git revision whose build runs as mlgate-baseline, next to this checkout's in the same run. */
  baseline?: string;
  /** Every mlgate process started runs with node --cpu-prof, its profile written into this directory when it stops. */
  cpuProf?: string;
}

export const USAGE = `usage: npm run bench -- [--cases a,b] [--targets t1,t2] [--rounds N] [--duration 2s] [--keep] [--baseline rev] [--cpu-prof dir]
  --cases     ${CASE_NAMES.join(',')} (default: all)
  --targets   ${TARGET_NAMES.join(',')} (default: all; mlgate-baseline only with --baseline)
  --rounds    rounds per case and target; the table shows medians (default 3)
  --duration  length of each load run, e.g. 3s or 5 (default 2s)
  --keep      keep the temporary directory (configs and logs of every server) and print its path
  --baseline  a git revision (e.g. HEAD~1, a commit) built in a temporary worktree and run as mlgate-baseline,
              started as mlgate is, in the same rounds: a before/after in one run
  --cpu-prof  a directory: every mlgate process runs with node --cpu-prof and writes its profile there when it stops
              (open it in Chrome DevTools; profiling slows the gateway, so numbers of that run are not comparable)`;

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      cases: { type: 'string' },
      targets: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '2s' },
      keep: { type: 'boolean', default: false },
      baseline: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`--rounds must be a whole number from 1 to 20, got ${values.rounds}`);
  const duration = /^(\d+(?:\.\d+)?)(s?)$/.exec(values.duration);
  const durationS = duration ? Number(duration[1]) : NaN;
  if (!(durationS >= 1 && durationS <= 60)) throw new Error(`--duration must be 1s to 60s, got ${values.duration}`);
  const { baseline } = values;
  // git would take it for an option.
  if (baseline !== undefined && (baseline === '' || baseline.startsWith('-'))) throw new Error(`--baseline must be a git revision, got '${baseline}'`);
  let targets = pickList(values.targets, TARGET_NAMES, '--targets');
  if (baseline === undefined) {
    if (values.targets !== undefined && targets.includes('mlgate-baseline')) throw new Error('--targets mlgate-baseline needs --baseline <git revision>: the build it runs');
    targets = targets.filter((name) => name !== 'mlgate-baseline');
  } else if (!targets.includes('mlgate-baseline')) {
    // Nobody builds a baseline to leave it out; --targets mlgate --baseline X compares the two.
    targets = TARGET_NAMES.filter((name) => name === 'mlgate-baseline' || targets.includes(name));
  }
  return {
    cases: pickList(values.cases, CASE_NAMES, '--cases'),
    targets,
    rounds,
    // wrk takes whole seconds
    durationS: Math.round(durationS),
    keep: values.keep ?? false,
    ...(baseline !== undefined ? { baseline } : {}),
    ...(values['cpu-prof'] !== undefined ? { cpuProf: resolve(values['cpu-prof']) } : {}),
  };
}

function pickList<T extends string>(given: string | undefined, known: readonly T[], flag: string): T[] {
  if (!given) return [...known];
  const names = given.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = names.filter((name) => !known.includes(name as T));
  if (unknown.length) throw new Error(`${flag}: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  // Run in the canonical order whatever order they were given in, so results line up across runs.
  return known.filter((name) => names.includes(name));
}
