// mlgate's resident memory per process: idle (started, its start check answered, then nothing for
// 15 s), then with 1,000 keep-alive connections attached (each made one authenticated request),
// right away and once they have been idle for 15 s. A fresh instance per round, so earlier cases'
// traffic does not count.
import { rssMB } from '../lib/memory-and-cpu.ts';
import { lastLines } from '../lib/net.ts';
import { processTree, sleep, startProcess, stopProcess } from '../lib/processes.ts';
import { REPO_ROOT, TSX } from '../lib/workspace.ts';
import { startMlgate } from '../servers/mlgate.ts';
import { Unavailable } from '../servers/targets.ts';
import { ConfigRejected } from '../servers/mlgate.ts';
import type { BenchCase, CaseContext } from './bench-case.ts';

const CONNECTIONS = 1000;
/** After the connections are open: the reading of a gateway that has just answered 1,000 requests. */
const SETTLE_MS = 1000;
/**
 * Idle means this long without a request: long enough for the password-hashing thread to stop (10 s
 * without work, src/auth/hash-worker-pool.ts) and for V8 to give back start-up garbage once the
 * process is idle (its memory reducer: 8-30 s after start, measured): what an idle gateway keeps.
 */
const SETTLED_MS = 15_000;

/** The largest VmRSS each process reached over a short window (one reading can miss a GC's high point). */
async function rssByProcess(root: number): Promise<number[]> {
  const pids = processTree(root);
  const peaks = pids.map(() => 0);
  for (let i = 0; i < 5; i++) {
    pids.forEach((pid, k) => { peaks[k] = Math.max(peaks[k]!, rssMB(pid) ?? 0); });
    await sleep(100);
  }
  return peaks;
}

export const idleRss: BenchCase = {
  name: 'idle-rss',
  unit: 'MB',
  about: `mlgate idle (started, the start check's one Basic request answered, then ${SETTLED_MS / 1000} s without traffic), then with ${CONNECTIONS} keep-alive connections opened by a separate Node process, each after one authenticated GET: right away, and once they have been idle ${SETTLED_MS / 1000} s; value = the largest process (primary or worker) idle and with the idle connections`,
  flavor: 'own',
  targets: ['mlgate', 'mlgate-auto'],
  async measure(ctx: CaseContext, target, _endpoint) {
    const upstreamUrl = ctx.upstreamUrl;
    let gateway;
    try {
      gateway = await startMlgate(ctx.ws, { name: `${target}-idle`, upstreamUrl, tls: false, workersAuto: target === 'mlgate-auto' });
    } catch (err) {
      if (err instanceof ConfigRejected && target === 'mlgate-auto') throw new Unavailable(`gateway does not take \`workers: auto\` yet (${err.message})`);
      throw err;
    }
    try {
      await sleep(SETTLED_MS);
      const idle = await rssByProcess(gateway.process.pid);
      const args = ['--import', TSX, 'bench/load/idle-connections.ts', `${gateway.url}/health`, String(CONNECTIONS), '60', ctx.ws.authorization];
      const client = startProcess('idle connections', process.execPath, args, { cwd: REPO_ROOT, minOpenFiles: CONNECTIONS + 100 });
      try {
        const ready = await waitForLine(client.child.stdout!, /^ready (\d+)(.*)$/m, 30_000);
        const open = Number(ready[1]);
        if (open < CONNECTIONS) throw new Error(`only ${open} of ${CONNECTIONS} connections stayed open${ready[2]}`);
        await sleep(SETTLE_MS);
        const loaded = await rssByProcess(gateway.process.pid);
        await sleep(SETTLED_MS);
        const settled = await rssByProcess(gateway.process.pid);
        const extra: Record<string, number> = { idleMaxMB: Math.max(...idle), loadedMaxMB: Math.max(...loaded), settledMaxMB: Math.max(...settled), processes: loaded.length };
        idle.forEach((mib, i) => { extra[`idleMB${i}`] = mib; });
        loaded.forEach((mib, i) => { extra[`loadedMB${i}`] = mib; });
        settled.forEach((mib, i) => { extra[`settledMB${i}`] = mib; });
        return { value: Math.max(...settled, ...idle), extra };
      } catch (err) {
        throw new Error(`${(err as Error).message}; client: ${lastLines(client.output(), 2)}`);
      } finally {
        await stopProcess(client, 1000);
      }
    } finally {
      await stopProcess(gateway.process, 5000);
    }
  },
  notes(extra) {
    const count = extra.processes ?? 0;
    const list = (prefix: string) => Array.from({ length: count }, (_, i) => (extra[`${prefix}${i}`] ?? 0).toFixed(0)).join('/');
    const who = count > 1 ? ' (primary/workers)' : '';
    return `idle ${list('idleMB')} MB, ${CONNECTIONS} idle conns ${list('settledMB')} MB (${list('loadedMB')} MB just after their requests)${who}`;
  },
};

function waitForLine(stream: NodeJS.ReadableStream, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => { stream.off('data', onData); reject(new Error(`no "${pattern.source}" within ${timeoutMs / 1000}s`)); }, timeoutMs);
    function onData(chunk: Buffer | string) {
      text += chunk.toString();
      const match = pattern.exec(text);
      if (!match) return;
      clearTimeout(timer);
      stream.off('data', onData);
      resolve(match);
    }
    stream.on('data', onData);
  });
}
