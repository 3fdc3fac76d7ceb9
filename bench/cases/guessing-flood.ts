// A steady stream of wrong passwords for existing users, and meanwhile one legitimate client
// whose credential is already verified: does guessing slow everyone else down?
import { waitUntilQuiet } from '../lib/memory-and-cpu.ts';
import { request } from '../lib/net.ts';
import { sleep } from '../lib/processes.ts';
import { startLoad } from '../load/http-load.ts';
import { runNodeClient } from '../load/node-client.ts';
import type { PacedResult } from '../load/paced-client.ts';
import type { BenchCase } from './bench-case.ts';

const ATTACKERS = 20;
const LEGIT_PER_S = 20;
/** The flood runs this long before the legitimate client starts, so queues are already full. */
const WARM_UP_S = 1;


export const guessingFlood: BenchCase = {
  name: 'guessing-flood',
  unit: 'req/s',
  about: `${ATTACKERS} connections (wrk) each sending a new random wrong password per request for existing users, while a legitimate client with a cached credential POSTs at a fixed ${LEGIT_PER_S}/s (Node, open loop: each answer waited for up to 5 s, later = unanswered); value = legitimate answers/s; notes = wrong attempts answered in the window`,
  flavor: 'auth',
  targets: ['nginx', 'caddy', 'mlgate', 'mlgate-auto'],
  async measure(ctx, _target, endpoint) {
    const { durationS } = ctx.options;
    // The legitimate credential is verified before the flood, as it would have been long before.
    const first = await request(`${endpoint!.url}/health`, { headers: { authorization: ctx.ws.authorization }, timeoutMs: 30_000 });
    if (first.status !== 200) throw new Error(`the legitimate user's first request answered ${first.status}`);
    const started = performance.now();
    const flood = await startLoad({
      url: endpoint!.url, script: 'wrong-passwords', threads: 1, connections: ATTACKERS,
      // Stopped (SIGINT, after which wrk still reports) once the legitimate client has all its answers.
      durationS: WARM_UP_S + durationS + 20,
      // A guess answered late is still an attempt processed.
      timeoutS: 60,
      env: { BENCH_VICTIMS: ctx.ws.victims.map((u) => u.name).join(',') },
    });
    try {
      await sleep(WARM_UP_S * 1000);
      const legit = await runNodeClient<PacedResult>('paced-client', [`${endpoint!.url}/api/2.0/mlflow/runs/log-metric`, String(LEGIT_PER_S), String(durationS), ctx.ws.authorization], durationS + 25);
      flood.stop();
      const wrong = await flood.result;
      const floodS = (performance.now() - started) / 1000;
      if (legit.failed > 0) throw new Error(`the legitimate client got ${legit.failed} error answers of ${legit.sent} (${legit.firstError})`);
      // -1: the percentile fell on a request still unanswered after the client's 5 s wait.
      const latency = (ms: number | null) => (ms === null ? undefined : ms < 0 ? Infinity : ms);
      return {
        value: legit.answered / durationS,
        p50Ms: latency(legit.p50Ms),
        p99Ms: latency(legit.p99Ms),
        extra: {
          legitSent: legit.sent,
          legitUnanswered: legit.unanswered,
          legitMaxMs: legit.maxMs ?? NaN,
          wrongAnswered: wrong.requests,
          wrongPerS: wrong.requests / floodS,
          lockoutRefusals: wrong.lockoutRefusals ?? 0,
          // A guess that got a 2xx would mean a wrong password was let in.
          wrongAccepted: wrong.requests - wrong.non2xx,
        },
      };
    } finally {
      flood.stop();
      await flood.result.catch(() => undefined);
      await endpoint!.dropBacklog?.();
      // Guesses already queued are still being hashed; the next round must not start on a busy machine.
      await waitUntilQuiet(endpoint!.pids(), 30_000);
    }
  },
  notes(extra) {
    const wrong = Math.round(extra.wrongAnswered ?? 0);
    const locked = Math.round(extra.lockoutRefusals ?? 0);
    const parts = [`wrong answered ${wrong.toLocaleString('en-US')} (${(extra.wrongPerS ?? 0).toFixed(1)}/s${locked ? `, ${locked.toLocaleString('en-US')} refused by lockout unhashed` : ''})`];
    if (!Number.isNaN(extra.legitMaxMs)) parts.push(`legit max ${Math.round(extra.legitMaxMs!)} ms`);
    if (extra.legitUnanswered) parts.push(`${extra.legitUnanswered} of ${extra.legitSent} legit unanswered after 5 s`);
    if (extra.wrongAccepted) parts.push(`${extra.wrongAccepted} WRONG PASSWORDS ACCEPTED`);
    return parts.join(', ');
  },
};
