// The two HTTP forwarders (proxy.forwarder: http-proxy and undici) behind the same gateway, side by
// side in the same rounds: two gateways started from this checkout with one config line apart,
// measured back to back within each round, so the ratio says which core forwards faster here.
//
//   small    small-basic's load (POST log-metric, Basic, bcrypt cost 12, access control on as a
//            non-admin; wrk -t2 -c50, keep-alive), with the gateway's CPU time per request from
//            /proc (utime + stime over the requests wrk counted)
//   up/down  stream-up's and stream-down's 1 GiB transfer with curl, and the gateway's peak RSS
import { LOG_METRIC, METRIC_BODY } from '../lib/mlflow-fixture.ts';
import { cpuMicros, sampleRss } from '../lib/memory-and-cpu.ts';
import { request } from '../lib/net.ts';
import { stopProcess } from '../lib/processes.ts';
import { ARTIFACT_DIR, ARTIFACT_NAME, ARTIFACT_PREFIX } from '../lib/workspace.ts';
import { curlTransfer } from '../load/curl-transfer.ts';
import { runLoad } from '../load/http-load.ts';
import { describePaired, paired, type Row } from '../report/rows.ts';
import { formatNumber } from '../report/table.ts';
import { startMlgate, type Mlgate } from '../servers/mlgate.ts';
import { requireSuccess, type BenchCase, type CaseContext, type Measurement, type Variant } from './bench-case.ts';

type Forwarder = 'http-proxy' | 'undici';
type Load = 'small' | 'up' | 'down';
const FORWARDERS: readonly Forwarder[] = ['http-proxy', 'undici'];
const LOADS: readonly { load: Load; label: string }[] = [
  { load: 'small', label: 'small-basic req/s' },
  { load: 'up', label: '1 GiB up MB/s' },
  { load: 'down', label: '1 GiB down MB/s' },
];
const VARIANTS: readonly (Variant & { forwarder: Forwarder; load: Load })[] = LOADS.flatMap(({ load, label }) => FORWARDERS.map((forwarder) => ({
  name: `${load}-${forwarder}`, label: `${forwarder}, ${label}`, forwarder, load,
})));
/** Unmeasured load on each fresh gateway: Node runs 30-50% slower for its first seconds (JIT, heap). */
const WARM_UP_S = 6;

let gateways: Promise<Record<Forwarder, Mlgate>> | undefined;
let measured = 0;

async function start(ctx: CaseContext): Promise<Record<Forwarder, Mlgate>> {
  const started = {} as Record<Forwarder, Mlgate>;
  for (const forwarder of FORWARDERS) {
    const gateway = await startMlgate(ctx.ws, { name: `forwarder-${forwarder}`, upstreamUrl: ctx.upstreamUrl, tls: false, workersAuto: false, extraConfig: ['proxy:', `  forwarder: ${forwarder}`] });
    started[forwarder] = gateway;
    const warm = await runLoad({ url: gateway.url + LOG_METRIC, script: 'post-metric', threads: 2, connections: 50, durationS: WARM_UP_S, env: { BENCH_AUTHORIZATION: ctx.ws.authorization } });
    requireSuccess(`${forwarder}, unmeasured warm-up run`, warm.requests, warm.non2xx);
  }
  return started;
}

async function measure(ctx: CaseContext, variant: (typeof VARIANTS)[number]): Promise<Measurement> {
  const gateway = (await (gateways ??= start(ctx)))[variant.forwarder];
  const pid = gateway.process.pid;
  if (variant.load === 'small') {
    const first = await request(gateway.url + LOG_METRIC, { method: 'POST', headers: { authorization: ctx.ws.authorization, 'content-type': 'application/json' }, body: METRIC_BODY, timeoutMs: 30_000 });
    if (first.status !== 200) throw new Error(`${variant.label}: POST log-metric answered ${first.status}: ${first.body.slice(0, 300)}`);
    const before = cpuMicros([pid]);
    const result = await runLoad({ url: gateway.url + LOG_METRIC, script: 'post-metric', threads: 2, connections: 50, durationS: ctx.options.durationS, env: { BENCH_AUTHORIZATION: ctx.ws.authorization } });
    const cpuUs = cpuMicros([pid]) - before;
    requireSuccess(variant.label, result.requests, result.non2xx);
    if (result.requests === 0) throw new Error(`${variant.label}: no answer within the run`);
    return { value: result.requestsPerS, p50Ms: result.p50Ms, p99Ms: result.p99Ms, extra: { requests: result.requests, cpuUsPerRequest: cpuUs / result.requests } };
  }
  const sampler = sampleRss([pid]);
  try {
    const name = variant.load === 'up' ? `${ARTIFACT_DIR}/upload-${Date.now()}.bin` : ARTIFACT_NAME;
    const result = await curlTransfer({ direction: variant.load, url: `${gateway.url}${ARTIFACT_PREFIX}${name}`, authorization: ctx.ws.authorization, file: ctx.ws.artifactFile });
    const rss = sampler.stop();
    return { value: result.mbPerS, extra: { seconds: result.seconds, peakRssMB: rss.peakMB } };
  } finally {
    sampler.stop();
  }
}

export const forwarders: BenchCase = {
  name: 'forwarders',
  unit: 'req/s | MB/s',
  about: 'proxy.forwarder http-proxy against undici: two gateways of this checkout, one config line apart, measured back to back in each round; '
    + 'small-basic\'s load (wrk -t2 -c50, Basic cost 12, access control on) with the gateway\'s CPU per request from /proc, and the 1 GiB upload and download with curl',
  flavor: 'own',
  targets: ['mlgate'],
  variants: () => VARIANTS,
  async measure(ctx, _target, _endpoint, variant) {
    try {
      return await measure(ctx, VARIANTS.find((v) => v.name === variant!.name)!);
    } finally {
      if (++measured === VARIANTS.length * ctx.options.rounds && gateways) {
        const started = await gateways.catch(() => undefined);
        for (const gateway of Object.values(started ?? {})) await stopProcess(gateway.process, 5000);
      }
    }
  },
  notes(extra) {
    const parts: string[] = [];
    if (extra.cpuUsPerRequest !== undefined) parts.push(`${extra.cpuUsPerRequest.toFixed(0)} µs CPU per request`);
    if (extra.peakRssMB !== undefined) parts.push(`peak RSS ${extra.peakRssMB.toFixed(0)} MB`);
    return parts.join(', ');
  },
  compare(rows: Row[]): string[] {
    const lines: string[] = [];
    for (const { load, label } of LOADS) {
      const base = rows.find((row) => row.variant === `${load}-http-proxy`);
      const undici = rows.find((row) => row.variant === `${load}-undici`);
      if (base?.status !== 'ok' || undici?.status !== 'ok') continue;
      const ratio = paired(undici, base);
      if (ratio) {
        undici.extra.vsHttpProxy = ratio.median;
        undici.notes = [`${describePaired(ratio)} of http-proxy`, undici.notes].filter(Boolean).join('; ');
      }
      const cpu = load === 'small' ? `; CPU per request ${undici.extra.cpuUsPerRequest?.toFixed(0)} µs against ${base.extra.cpuUsPerRequest?.toFixed(0)} µs` : '';
      lines.push(`${label.padEnd(18)} undici ${formatNumber(undici.value!)}, http-proxy ${formatNumber(base.value!)}: undici/http-proxy ${describePaired(ratio)}${cpu}`);
    }
    if (lines.length) lines.unshift('forwarders: the same gateway with proxy.forwarder undici against http-proxy (medians; ratio the median of each round\'s, lowest-highest round):');
    return lines;
  },
};
