// Issue 12: while 2,000 slow unauthenticated connections from several loopback addresses are held
// open against the gateway (bench/load/slow-clients.ts: trickled headers, stalled bodies after a
// 401, a trickled sign-in form; each reopened the moment the gateway drops it), a signed-in user
// POSTs at a fixed rate (open loop, over TLS, keep-alive). Goals: the user's p99 < 100 ms, the
// gateway's RSS < 300 MB. A fresh gateway per round, with the default limits.
import { sampleRss } from '../lib/memory-and-cpu.ts';
import { lastLines } from '../lib/net.ts';
import { processTree, readStat, sleep, startProcess, stopProcess } from '../lib/processes.ts';
import { REPO_ROOT, TSX } from '../lib/workspace.ts';
import { runNodeClient } from '../load/node-client.ts';
import type { PacedResult } from '../load/paced-client.ts';
import { startMlgate } from '../servers/mlgate.ts';
import type { BenchCase } from './bench-case.ts';

const SLOW_CONNECTIONS = 2000;
const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
const LEGIT_PER_S = 20;
/** At least this long a window (20/s: 200 answers), whatever --duration says: a p99 needs samples. */
const MIN_WINDOW_S = 10;


export const slowClients: BenchCase = {
  name: 'slow-clients',
  unit: 'ms',
  about: `${SLOW_CONNECTIONS} slow unauthenticated TLS connections from ${ADDRESSES.length} addresses (trickled headers, stalled bodies after a 401, trickled sign-in forms; reopened when dropped) while a signed-in user POSTs log-metric at ${LEGIT_PER_S}/s (open loop, keep-alive); value = the user's p99 (goal < 100 ms); notes = gateway peak RSS (goal < 300 MB)`,
  flavor: 'own',
  targets: ['mlgate'],
  async measure(ctx, target) {
    const windowS = Math.max(MIN_WINDOW_S, ctx.options.durationS);
    const gateway = await startMlgate(ctx.ws, { name: `${target}-slow-clients`, upstreamUrl: ctx.upstreamUrl, tls: true, workersAuto: false });
    try {
      const holdS = windowS + 60;
      const attacker = startProcess('slow clients', process.execPath, ['--import', TSX, 'bench/load/slow-clients.ts', gateway.url, String(SLOW_CONNECTIONS), ADDRESSES.join(','), String(holdS)], { cwd: REPO_ROOT, minOpenFiles: SLOW_CONNECTIONS + 200 });
      let output = '';
      attacker.child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
      try {
        const deadline = Date.now() + 60_000;
        while (!/^ready \d+/m.test(output)) {
          if (Date.now() > deadline) throw new Error(`the slow clients never all connected: ${lastLines(attacker.output(), 2)}`);
          await sleep(100);
        }
        // Let the first timeouts come round, so the gateway is dropping and re-accepting as it goes.
        await sleep(2000);
        const rss = sampleRss(processTree(gateway.process.pid), 100);
        const cpu = (pid: number) => { const stat = readStat(pid); return stat ? stat.utime + stat.stime : 0; };
        const cpuBefore = [cpu(gateway.process.pid), cpu(attacker.child.pid!)];
        const startedAt = performance.now();
        const legit = await runNodeClient<PacedResult>('paced-client', [`${gateway.url}/api/2.0/mlflow/runs/log-metric`, String(LEGIT_PER_S), String(windowS), ctx.ws.authorization], windowS + 25);
        const memory = rss.stop();
        // Clock ticks (100/s) -> share of one core over the window.
        const elapsedS = (performance.now() - startedAt) / 1000;
        const [gatewayCpu, attackerCpu] = [cpu(gateway.process.pid), cpu(attacker.child.pid!)].map((now, i) => (now - cpuBefore[i]!) / 100 / elapsedS * 100);
        const stats = [...output.matchAll(/^stats (\{.*\})$/gm)].map((m) => JSON.parse(m[1]!) as { open: number; opened: number; droppedByGateway: number });
        const last = stats.at(-1) ?? { open: 0, opened: 0, droppedByGateway: 0 };
        const minOpen = stats.length ? Math.min(...stats.map((s) => s.open)) : 0;
        if (legit.failed > 0) throw new Error(`the signed-in user got ${legit.failed} error answers of ${legit.sent} (${legit.firstError})`);
        const latency = (ms: number | null) => (ms === null ? undefined : ms < 0 ? Infinity : ms);
        return {
          value: latency(legit.p99Ms) ?? NaN,
          p50Ms: latency(legit.p50Ms),
          p99Ms: latency(legit.p99Ms),
          extra: {
            peakRssMB: memory.peakMB,
            gatewayCpuPct: gatewayCpu!,
            attackerCpuPct: attackerCpu!,
            legitSent: legit.sent,
            legitUnanswered: legit.unanswered,
            legitMaxMs: legit.maxMs ?? NaN,
            slowOpenMin: minOpen,
            slowOpenEnd: last.open,
            slowDroppedPerS: last.droppedByGateway / Math.max(1, stats.length),
          },
        };
      } finally {
        await stopProcess(attacker, 1000);
      }
    } finally {
      await stopProcess(gateway.process, 5000);
    }
  },
  notes(extra) {
    const parts = [
      `peak RSS ${Math.round(extra.peakRssMB ?? 0)} MB`,
      `slow connections open ${Math.round(extra.slowOpenMin ?? 0)}-${Math.round(extra.slowOpenEnd ?? 0)}, ${Math.round(extra.slowDroppedPerS ?? 0)}/s dropped by the gateway and reopened`,
    ];
    parts.push(`CPU gateway ${Math.round(extra.gatewayCpuPct ?? 0)}%, slow clients ${Math.round(extra.attackerCpuPct ?? 0)}% of a core`);
    if (!Number.isNaN(extra.legitMaxMs)) parts.push(`legit max ${Math.round(extra.legitMaxMs!)} ms`);
    if (extra.legitUnanswered) parts.push(`${extra.legitUnanswered} of ${extra.legitSent} legit unanswered after 5 s`);
    return parts.join(', ');
  },
};
