// 1 GiB artifact upload and download through each target, and the proxy's peak memory meanwhile:
// a streaming proxy should move the bytes at close to the direct rate without holding them.
import { sampleRss } from '../lib/memory-and-cpu.ts';
import { curlTransfer } from '../load/curl-transfer.ts';
import { ARTIFACT_DIR, ARTIFACT_NAME, ARTIFACT_PREFIX } from '../lib/workspace.ts';
import type { BenchCase, Measurement } from './bench-case.ts';
import type { CaseContext } from './bench-case.ts';
import type { Endpoint } from '../servers/targets.ts';
import type { TargetName } from '../lib/options.ts';

async function transfer(ctx: CaseContext, target: TargetName, endpoint: Endpoint, direction: 'up' | 'down'): Promise<Measurement> {
  // The upstream's own memory is not the proxy's; for direct there is no proxy to watch.
  const sampler = target === 'direct' ? undefined : sampleRss(endpoint.pids());
  try {
    const name = direction === 'up' ? `${ARTIFACT_DIR}/upload-${Date.now()}.bin` : ARTIFACT_NAME;
    const result = await curlTransfer({ direction, url: `${endpoint.url}${ARTIFACT_PREFIX}${name}`, authorization: ctx.ws.authorization, file: ctx.ws.artifactFile });
    const rss = sampler?.stop();
    return { value: result.mbPerS, extra: { seconds: result.seconds, ...(rss ? { peakRssMB: rss.peakMB, peakGrowthMB: rss.peakMB - rss.startMB } : {}) } };
  } finally {
    sampler?.stop();
  }
}

// The growth shows what the transfer itself holds, apart from what the process had before it.
const notes = (extra: Record<string, number>) => (extra.peakRssMB === undefined ? '' : `peak RSS ${extra.peakRssMB.toFixed(0)} MB (+${(extra.peakGrowthMB ?? 0).toFixed(0)} MB during the transfer)`);
// Not mlgate-auto: one transfer is one connection, served by one worker exactly as by mlgate.
const targets = ['direct', 'nginx', 'caddy', 'mlgate'] as const;

export const streamUp: BenchCase = {
  name: 'stream-up',
  unit: 'MB/s',
  about: '1 GiB PUT to /api/2.0/mlflow-artifacts/artifacts/... with curl (-T, no Expect), Basic auth; the upstream reads all of it before answering; RSS: VmRSS every 50 ms, summed over the target\'s processes (nginx: master + workers)',
  flavor: 'stream',
  targets,
  measure: (ctx, target, endpoint) => transfer(ctx, target, endpoint!, 'up'),
  notes,
};

export const streamDown: BenchCase = {
  name: 'stream-down',
  unit: 'MB/s',
  about: '1 GiB GET of an artifact (upstream: nginx sendfile) with curl -o /dev/null, Basic auth; RSS as for stream-up',
  flavor: 'stream',
  targets,
  measure: (ctx, target, endpoint) => transfer(ctx, target, endpoint!, 'down'),
  notes,
};
