// The legitimate client of the guessing-flood case: POSTs a metric at a fixed rate whatever the
// answers' speed (open loop), then waits for every answer, so slow answers are counted instead of
// being cut off at the end of the window (which a closed-loop tool like wrk does). Its own process:
//   node --import tsx bench/load/paced-client.ts <url> <perSecond> <seconds> <authorization>
// Prints one JSON line: {"sent","answered","failed","unanswered","p50Ms","p99Ms","maxMs","firstError"};
// a percentile that falls on an unanswered request is -1 (slower than the wait).
import http from 'node:http';
import https from 'node:https';
import { percentile } from '../lib/stats.ts';

/** The JSON line this client prints (read by the guessing-flood and slow-clients cases). */
export interface PacedResult {
  sent: number;
  answered: number;
  failed: number;
  unanswered: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  firstError: string | null;
}

const [urlArg, rateArg, secondsArg, authorization] = process.argv.slice(2);
if (!urlArg || !rateArg || !secondsArg || !authorization) throw new Error('usage: paced-client.ts <url> <perSecond> <seconds> <authorization>');
const BODY = '{"run_id":"4f2e9c1d8a7b4e3f9a1b2c3d4e5f6a7b","key":"loss","value":0.2513,"timestamp":1700000000000,"step":42}';
/** How long an answer is waited for; later ones count as unanswered (bounded so a run stays bounded). */
const WAIT_MS = 5_000;

// https for the slow-clients case (the bench's self-signed certificate: not verified).
const client = urlArg.startsWith('https:') ? https : http;
const agent = new client.Agent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: false });
const latencies: number[] = [];
let sent = 0;
let failed = 0;
let unanswered = 0;
let firstError: string | undefined;
const pending = new Set<Promise<void>>();

function send(): void {
  sent++;
  const started = performance.now();
  const done = new Promise<void>((resolve) => {
    let settled = false;
    const settle = (outcome: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (outcome === 'ok') latencies.push(performance.now() - started);
      else if (outcome === 'unanswered') {
        unanswered++;
        req.destroy();
      } else {
        failed++;
        firstError ??= outcome;
      }
      resolve();
    };
    const req = client.request(urlArg!, { method: 'POST', agent, headers: { authorization, 'content-type': 'application/json', 'content-length': BODY.length } }, (res) => {
      res.resume();
      res.on('end', () => settle(res.statusCode === 200 ? 'ok' : `HTTP ${res.statusCode}`));
      res.on('error', (err) => settle(err.message));
    });
    // From the moment it was due, not from when a socket freed up: queueing is part of the wait.
    const timer = setTimeout(() => settle('unanswered'), WAIT_MS);
    req.on('error', (err) => settle(err.message));
    req.end(BODY);
  });
  pending.add(done);
  void done.then(() => pending.delete(done));
}

const intervalMs = 1000 / Number(rateArg);
const end = performance.now() + Number(secondsArg) * 1000;
// Paced by the clock, not by a fixed delay after each send, so the rate holds whatever the latency.
for (let next = performance.now(); next < end; next += intervalMs) {
  const wait = next - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  send();
}
await Promise.all(pending);
// Unanswered requests rank as slower than any answer.
const ranked = [...latencies, ...Array<number>(unanswered).fill(Infinity)];
const finite = (value: number | undefined) => (value === undefined ? null : Number.isFinite(value) ? value : -1);
process.stdout.write(`${JSON.stringify({
  sent,
  answered: latencies.length,
  failed,
  unanswered,
  p50Ms: finite(percentile(ranked, 50)),
  p99Ms: finite(percentile(ranked, 99)),
  maxMs: latencies.length ? Math.max(...latencies) : null,
  firstError: firstError ?? null,
} satisfies PacedResult)}\n`);
process.exit(0);
