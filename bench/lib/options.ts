// The command line: npm run bench -- [--cases a,b] [--targets x,y] [--rounds N] [--duration 5s]
import { parseArgs } from 'node:util';

export const CASE_NAMES = [
  'small-basic', 'small-bearer', 'small-noauth', 'latency-1conn', 'authz-log-metric', 'tls-handshake',
  'stream-up', 'stream-down', 'guessing-flood', 'idle-rss', 'slow-clients',
] as const;
export type CaseName = (typeof CASE_NAMES)[number];

export const TARGET_NAMES = ['direct', 'nginx', 'caddy', 'mlgate', 'mlgate-auto'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Options {
  cases: CaseName[];
  targets: TargetName[];
  rounds: number;
  /** Seconds each load run lasts. */
  durationS: number;
  /** Leave the temporary directory (configs, access logs, error logs) for inspection. */
  keep: boolean;
}

export const USAGE = `usage: npm run bench -- [--cases a,b] [--targets t1,t2] [--rounds N] [--duration 2s] [--keep]
  --cases     ${CASE_NAMES.join(',')} (default: all)
  --targets   ${TARGET_NAMES.join(',')} (default: all)
  --rounds    rounds per case and target; the table shows medians (default 3)
  --duration  length of each load run, e.g. 3s or 5 (default 2s)
  --keep      keep the temporary directory (configs and logs of every server) and print its path`;

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      cases: { type: 'string' },
      targets: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '2s' },
      keep: { type: 'boolean', default: false },
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
  return {
    cases: pickList(values.cases, CASE_NAMES, '--cases'),
    targets: pickList(values.targets, TARGET_NAMES, '--targets'),
    rounds,
    // wrk takes whole seconds
    durationS: Math.round(durationS),
    keep: values.keep ?? false,
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
