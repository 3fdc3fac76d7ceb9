// What can move is checked where it is now (issue 11 class 4), and compressed bodies are bounded
// (issue 12 class 3). Against the real MLflow:
// - which associations MLflow can change: a trace's experiment (StartTraceV3 with an existing
//   trace id moves it), a dataset's experiments (add/remove-experiments); a run's and a logged
//   model's experiment cannot change;
// - an ordinary user (mallory) cannot move, extend or read another experiment's trace by naming its
//   id in a create body or in an OTLP payload (protobuf, plain, gzip or deflate); each refusal is
//   read back around the gateway;
// - a gateway that saw a trace or dataset in one experiment does not keep believing it after MLflow
//   moved it (what another replica, or MLflow directly, did);
// - a compressed OTLP body is bounded in its decompressed size (authz.maxDecompressedBody, 413);
// - the real 3.11.1 client's tracing (@mlflow.trace, mlflow.start_span) still works as mallory.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';
import { otlpTraceIds } from '../../src/authz/otlp-trace-ids.ts';

const v3 = mlflowServersFor('trace associations against the real MLflow 3', { mlflow3Only: true });

const mallory = basic('mallory', 'mallory-password');
const JSON_HEADERS = { authorization: mallory, 'content-type': 'application/json' };
const POLICY = { rules: [{ experiment: 'hidden-*', users: ['*'], level: 'NO_PERMISSIONS' }], default: 'READ' };
/** Small, so the decompression bomb below need not be large. */
const MAX_DECOMPRESSED = 256 * 1024;

// ---- a minimal OTLP protobuf writer (ExportTraceServiceRequest) ----

function varint(n: number | bigint): Buffer {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const field = (num: number, bytes: Buffer): Buffer => Buffer.concat([varint((num << 3) | 2), varint(bytes.length), bytes]);
function fixed64(num: number, value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return Buffer.concat([varint((num << 3) | 1), b]);
}

interface SpanSpec { traceId: Buffer; spanId?: Buffer; name?: string; extraTraceIds?: Buffer[] }

function span(spec: SpanSpec): Buffer {
  const now = BigInt(Date.now()) * 1_000_000n;
  return Buffer.concat([
    field(1, spec.traceId),
    field(2, spec.spanId ?? randomBytes(8)),
    field(5, Buffer.from(spec.name ?? 'span')),
    fixed64(7, now),
    fixed64(8, now + 1_000_000n),
    // protobuf keeps the last value of a field given twice
    ...(spec.extraTraceIds ?? []).map((id) => field(1, id)),
  ]);
}

/** resource_spans(1) { scope_spans(2) { spans(2)... } } for each group. */
function otlp(groups: SpanSpec[][]): Buffer {
  return Buffer.concat(groups.map((spans) => field(1, field(2, Buffer.concat(spans.map((s) => field(2, span(s))))))));
}

const otelIdOf = (traceId: string): Buffer => Buffer.from(traceId.slice(3), 'hex');
const newTraceId = (): string => `tr-${randomBytes(16).toString('hex')}`;

// ---- random OTLP payloads, for comparing the gateway's reading with MLflow's ----

function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomPayload(random: () => number): Buffer {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const times = (max: number, make: () => Buffer) => Buffer.concat(Array.from({ length: int(max + 1) }, make));
  const ascii = () => Buffer.from(Array.from({ length: int(6) }, () => 97 + int(26)));
  // A field of another wire type or number: skipped by the parser, or (same number, wire type 2) read.
  const stray = (): Buffer => {
    const num = pick([1, 2, 3, 5, 9, 15, 1000]);
    switch (pick([0, 1, 2, 5])) {
      case 0: return Buffer.concat([varint(num << 3), varint(int(1 << 20))]);
      case 1: return fixed64(num, BigInt(int(1 << 30)));
      case 5: return Buffer.concat([varint((num << 3) | 5), Buffer.alloc(4, int(256))]);
      default: return field(num, ascii());
    }
  };
  const strays = () => (random() < 0.3 ? times(2, stray) : Buffer.alloc(0));
  const spanBytes = () => Buffer.concat([
    times(2, () => field(1, Buffer.concat([Buffer.alloc(pick([0, 0, 0, 1, 4])), randomBytes(pick([16, 16, 16, 0, 8, 20]))]))),
    random() < 0.9 ? field(2, randomBytes(8)) : Buffer.alloc(0),
    field(5, ascii()), fixed64(7, 1_000_000n), fixed64(8, 2_000_000n),
    strays(),
  ]);
  const scopeSpans = () => Buffer.concat([random() < 0.5 ? field(1, field(1, ascii())) : Buffer.alloc(0), times(3, () => field(2, spanBytes())), strays()]);
  const resourceSpans = () => Buffer.concat([random() < 0.5 ? field(1, Buffer.alloc(0)) : Buffer.alloc(0), times(2, () => field(2, scopeSpans())), strays()]);
  let payload = Buffer.concat([times(3, () => field(1, resourceSpans())), strays()]);
  if (random() < 0.1 && payload.length > 0) payload = payload.subarray(0, int(payload.length));
  if (random() < 0.05 && payload.length > 0) {
    payload = Buffer.from(payload);
    payload[int(payload.length)] = int(256);
  }
  return payload;
}

interface TraceRead { experiment?: string; requestPreview?: string; spans: number; status: number }

for (const server of v3) {
  describe(`what can move, against MLflow ${server.version}`, () => {
    let direct: MlflowDirect;
    let gw: TestGateway;
    let hidden: string;
    let own: string;
    let other: string;
    const tag = `${server.version}-${Date.now()}`;

    async function traceIn(traceId: string): Promise<TraceRead> {
      const res = await direct.call('GET', `/api/3.0/mlflow/traces/${traceId}`);
      if (res.status !== 200) return { status: res.status, spans: 0 };
      const info = res.json<{ trace: { trace_info: { trace_location: { mlflow_experiment: { experiment_id: string } }; request_preview?: string } } }>().trace.trace_info;
      // A trace started without spans has none to get (500).
      const full = await direct.call('GET', '/api/3.0/mlflow/traces/get', { trace_id: traceId });
      const spans = full.status === 200 ? full.json<{ trace: { spans?: unknown[] } }>().trace.spans?.length ?? 0 : 0;
      return { status: 200, experiment: info.trace_location.mlflow_experiment.experiment_id, requestPreview: info.request_preview, spans };
    }

    function startTraceBody(traceId: string, experimentId: string, extra: Record<string, unknown> = {}) {
      return {
        trace: {
          trace_info: {
            trace_id: traceId,
            trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: experimentId } },
            request_time: new Date().toISOString(),
            execution_duration: '0.5s',
            state: 'OK',
            ...extra,
          },
        },
      };
    }

    /** A trace with a span, straight into MLflow, as its owner's client makes one. */
    async function seedTrace(experimentId: string, secret: string): Promise<string> {
      const traceId = newTraceId();
      const spans = await fetch(`${server.url}/v1/traces`, {
        method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'x-mlflow-experiment-id': experimentId },
        body: new Uint8Array(otlp([[{ traceId: otelIdOf(traceId), name: 'secret-span' }]])),
      });
      expect(spans.status, await spans.text()).toBe(200);
      const start = await direct.call('POST', '/api/3.0/mlflow/traces', startTraceBody(traceId, experimentId, { request_preview: secret, response_preview: `${secret}-out` }));
      expect(start.status, start.text).toBe(200);
      return traceId;
    }

    function sendOtlp(experimentId: string, body: Buffer, headers: Record<string, string> = {}) {
      return gw.request('/v1/traces', {
        method: 'POST', body,
        headers: { authorization: mallory, 'content-type': 'application/x-protobuf', 'x-mlflow-experiment-id': experimentId, ...headers },
      });
    }

    beforeAll(async () => {
      direct = new MlflowDirect(server.url);
      gw = await startTestGateway({ upstream: server.url, users: { mallory: 'mallory-password' }, policy: POLICY, config: { authz: { maxDecompressedBody: MAX_DECOMPRESSED } } });
      hidden = (await direct.api<{ experiment_id: string }>('POST', 'experiments/create', { name: `hidden-traces-${tag}` })).experiment_id;
      other = (await direct.api<{ experiment_id: string }>('POST', 'experiments/create', { name: `other-traces-${tag}` })).experiment_id;
      const created = await gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ name: `mallory-traces-${tag}` }) });
      expect(created.status, created.text).toBe(200);
      own = created.json<{ experiment_id: string }>().experiment_id;
    }, 60_000);
    afterAll(async () => {
      await gw?.close();
    });

    // ---- what MLflow lets move (established directly, around the gateway) ----

    it('MLflow moves a trace: StartTraceV3 with an existing trace id and another experiment re-homes it, previews and spans kept', async () => {
      const traceId = await seedTrace(other, 'moved-secret');
      const before = await traceIn(traceId);
      expect(before).toMatchObject({ experiment: other, requestPreview: 'moved-secret', spans: 1 });
      const moved = await direct.call('POST', '/api/3.0/mlflow/traces', startTraceBody(traceId, own));
      expect(moved.status, moved.text).toBe(200);
      // The answer carries what the trace held.
      expect(moved.text).toContain('moved-secret');
      expect(await traceIn(traceId)).toMatchObject({ experiment: own, requestPreview: 'moved-secret', spans: 1 });
      // OTLP spans for an existing trace are added to it where it is: the header's experiment is not used.
      const more = await fetch(`${server.url}/v1/traces`, {
        method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'x-mlflow-experiment-id': other }, body: new Uint8Array(otlp([[{ traceId: otelIdOf(traceId) }]])),
      });
      expect(more.status).toBe(200);
      expect(await traceIn(traceId)).toMatchObject({ experiment: own, spans: 2 });
    });

    it('MLflow moves a dataset between experiments (add-experiments, remove-experiments)', async () => {
      const created = await direct.call('POST', '/api/3.0/mlflow/datasets/create', { name: `ds-move-${tag}`, experiment_ids: [own] });
      expect(created.status, created.text).toBe(200);
      const datasetId = created.json<{ dataset: { dataset_id: string } }>().dataset.dataset_id;
      const ids = async () => (await direct.call('GET', `/api/3.0/mlflow/datasets/${datasetId}/experiment-ids`)).json<{ experiment_ids?: string[] }>().experiment_ids ?? [];
      expect(await ids()).toEqual([own]);
      expect((await direct.call('POST', `/api/3.0/mlflow/datasets/${datasetId}/add-experiments`, { dataset_id: datasetId, experiment_ids: [hidden] })).status).toBe(200);
      expect((await direct.call('POST', `/api/3.0/mlflow/datasets/${datasetId}/remove-experiments`, { dataset_id: datasetId, experiment_ids: [own] })).status).toBe(200);
      expect(await ids()).toEqual([hidden]);
    });

    it('MLflow never moves a run or a logged model: no route takes their id with another experiment', async () => {
      const run = (await direct.api<{ run: { info: { run_id: string } } }>('POST', 'runs/create', { experiment_id: own })).run.info.run_id;
      // runs/update and the creates take no id of an existing one; an experiment_id beside it is ignored.
      expect((await direct.call('POST', '/api/2.0/mlflow/runs/update', { run_id: run, experiment_id: other, status: 'FINISHED' })).status).toBe(200);
      expect((await direct.call('POST', '/api/2.0/mlflow/runs/create', { experiment_id: other, run_id: run })).json<{ run: { info: { run_id: string } } }>().run.info.run_id).not.toBe(run);
      expect((await direct.api<{ run: { info: { experiment_id: string } } }>('GET', 'runs/get', { run_id: run })).run.info.experiment_id).toBe(own);

      const model = (await direct.api<{ model: { info: { model_id: string } } }>('POST', 'logged-models', { experiment_id: own, name: 'lm' })).model.info.model_id;
      expect((await direct.call('PATCH', `/api/2.0/mlflow/logged-models/${model}`, { model_id: model, status: 'LOGGED_MODEL_READY', experiment_id: other })).status).toBe(200);
      const again = await direct.call('POST', '/api/2.0/mlflow/logged-models', { experiment_id: other, name: 'lm', model_id: model });
      expect(again.json<{ model: { info: { model_id: string } } }>().model.info.model_id).not.toBe(model);
      expect((await direct.api<{ model: { info: { experiment_id: string } } }>('GET', `logged-models/${model}`)).model.info.experiment_id).toBe(own);
    });

    // ---- the attacks, through the gateway ----

    it('reads the trace ids of an OTLP payload exactly as MLflow does (1000 random payloads, MLflow\'s own parser as the oracle)', async () => {
      const random = prng(20261203);
      const payloads = Array.from({ length: 1000 }, () => randomPayload(random));
      const run = await runMlflowClient<(string[] | null)[]>(server, 'trace_otlp_ids.py', { trackingUri: 'http://127.0.0.1:9' }, { payloads: payloads.map((p) => p.toString('base64')) }, 60_000);
      let compared = 0;
      for (const [i, payload] of payloads.entries()) {
        const mlflow = run.result[i];
        if (mlflow === null || mlflow === undefined) continue; // MLflow refuses it whole: nothing is logged
        const ours = otlpTraceIds(payload);
        if (!ours.ok) {
          expect(ours.reason, `payload ${i} ${payload.toString('hex')}`).toMatch(/group/); // refused, never read differently
          continue;
        }
        expect([...ours.traceIds].sort(), `payload ${i} ${payload.toString('hex')}`).toEqual(mlflow);
        compared++;
      }
      expect(compared).toBeGreaterThan(200);
    });

    it('refuses to move a hidden trace into her experiment by StartTraceV3, and MLflow still has it where it was', async () => {
      const traceId = await seedTrace(hidden, 'hidden-secret');
      for (const body of [startTraceBody(traceId, own), startTraceBody(traceId, own, { request_preview: 'mine' })]) {
        const res = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });
        expect(res.status, res.text).toBe(403);
        expect(res.text).not.toContain('hidden-secret');
      }
      expect(await traceIn(traceId)).toMatchObject({ experiment: hidden, requestPreview: 'hidden-secret', spans: 1 });
    });

    it('refuses to move a trace she may only READ, and lets her re-send the start of her own trace', async () => {
      const theirs = await seedTrace(other, 'their-trace');
      const res = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(startTraceBody(theirs, own)) });
      expect(res.status, res.text).toBe(403);
      expect(res.json().message).toMatch(/has READ on experiment .*needs EDIT/);
      expect((await traceIn(theirs)).experiment).toBe(other);

      const mine = newTraceId();
      for (const preview of ['first', 'second']) {
        const ok = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(startTraceBody(mine, own, { request_preview: preview })) });
        expect(ok.status, ok.text).toBe(200);
      }
      expect(await traceIn(mine)).toMatchObject({ experiment: own, requestPreview: 'second' });
    });

    it('never lets a trace start set where MLflow reads the trace\'s data (mlflow.artifactLocation in tags or metadata): MLflow keeps its own', async () => {
      const theirs = await seedTrace(hidden, 'located');
      const location = (await direct.call('GET', `/api/3.0/mlflow/traces/${theirs}`)).json<{ trace: { trace_info: { tags: Record<string, string> } } }>().trace.trace_info.tags['mlflow.artifactLocation']!;
      expect(location).toContain(theirs);
      const existing = newTraceId();
      expect((await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(startTraceBody(existing, own)) })).status).toBe(200);
      for (const [key, mine] of [['tags', newTraceId()], ['trace_metadata', newTraceId()], ['tags', existing]] as const) {
        const res = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(startTraceBody(mine, own, { [key]: { 'mlflow.artifactLocation': location } })) });
        const stored = await direct.call('GET', `/api/3.0/mlflow/traces/${mine}`);
        const tags = stored.status === 200 ? stored.json<{ trace: { trace_info: { tags?: Record<string, string> } } }>().trace.trace_info.tags ?? {} : {};
        // Refused, or MLflow kept its own location: never the hidden trace's.
        expect(tags['mlflow.artifactLocation'] ?? '', `${key}: ${res.status} ${res.text}`).not.toContain(theirs);
      }
    });

    it('refuses an assessment in a create body that names another experiment\'s trace', async () => {
      const theirs = await seedTrace(hidden, 'assessed');
      const mine = newTraceId();
      const body = startTraceBody(mine, own, {
        assessments: [{ assessment_name: 'a', trace_id: theirs, source: { source_type: 'HUMAN', source_id: 'm' }, feedback: { value: 'bad' } }],
      });
      const res = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });
      expect(res.status, res.text).toBe(403);
      expect((await traceIn(mine)).status).not.toBe(200);
    });

    it('refuses OTLP spans carrying a hidden trace\'s id, plain, gzip, deflate and raw deflate, however they are placed; nothing is added', async () => {
      const theirs = await seedTrace(hidden, 'otlp-target');
      const target = otelIdOf(theirs);
      const decoy = () => ({ traceId: randomBytes(16) });
      const payloads = [
        otlp([[{ traceId: target }]]),
        otlp([[decoy()], [{ traceId: target }]]),
        otlp([[decoy(), { traceId: randomBytes(16), extraTraceIds: [target] }]]),
        otlp([[{ traceId: Buffer.concat([Buffer.alloc(4), target]) }]]), // leading zero bytes: the same integer
      ];
      const encodings: [string | undefined, (b: Buffer) => Buffer][] = [
        [undefined, (b) => b], ['gzip', gzipSync], ['deflate', deflateSync], ['deflate', deflateRawSync], ['GZIP', gzipSync],
      ];
      for (const [i, payload] of payloads.entries()) {
        for (const [encoding, encode] of encodings) {
          const res = await sendOtlp(own, encode(payload), encoding ? { 'content-encoding': encoding } : {});
          expect(res.status, `payload ${i} ${encoding}: ${res.text}`).toBe(403);
        }
      }
      expect(await traceIn(theirs)).toMatchObject({ experiment: hidden, spans: 1 });
      // A body MLflow would not read as protobuf, or not as OTLP at all, is refused before it gets there.
      for (const [body, headers] of [
        [Buffer.from([0x0a, 0xff]), {}],
        [Buffer.from(JSON.stringify({ resourceSpans: [] })), { 'content-type': 'application/json' }],
        [gzipSync(otlp([[{ traceId: target }]])), { 'content-encoding': 'br' }],
      ] as [Buffer, Record<string, string>][]) {
        const res = await sendOtlp(own, body, headers);
        expect(res.status, res.text).toBe(400);
      }
      expect(await traceIn(theirs)).toMatchObject({ experiment: hidden, spans: 1 });
    });

    it('takes OTLP spans of her own new and existing traces, compressed or not', async () => {
      const fresh = newTraceId();
      for (const [encoding, encode] of [[undefined, (b: Buffer) => b], ['gzip', gzipSync], ['deflate', deflateSync]] as const) {
        const res = await sendOtlp(own, encode(otlp([[{ traceId: otelIdOf(fresh) }]])), encoding ? { 'content-encoding': encoding } : {});
        expect(res.status, res.text).toBe(200);
      }
      expect(await traceIn(fresh)).toMatchObject({ experiment: own, spans: 3 });
    });

    it('takes an export of 300 new traces (more than authz.maxLookupsPerRequest) in a few batched look-ups, and still refuses one hidden trace among them', async () => {
      const fresh = Array.from({ length: 300 }, newTraceId);
      const before = gw.gateway.authz.resolver.lookups;
      const res = await sendOtlp(own, otlp([fresh.map((id) => ({ traceId: otelIdOf(id) }))]));
      expect(res.status, res.text).toBe(200);
      // traces/batchGetInfos, 100 ids a call, plus the experiment the header names.
      expect(gw.gateway.authz.resolver.lookups - before).toBeLessThanOrEqual(5);
      const secret = await seedTrace(hidden, 'batched-secret');
      const mixed = await sendOtlp(own, otlp([[...Array.from({ length: 150 }, newTraceId), secret].map((id) => ({ traceId: otelIdOf(id) }))]));
      expect(mixed.status, mixed.text).toBe(403);
      expect((await traceIn(secret)).spans).toBe(1);
    });

    it('bounds the decompressed size of a compressed body: 413 beyond authz.maxDecompressedBody, nothing forwarded', async () => {
      const traceId = newTraceId();
      const padding = Buffer.alloc(MAX_DECOMPRESSED + 1024, 0x41);
      // A valid span followed by an unknown field holding the padding: small compressed, large once read.
      const bomb = Buffer.concat([otlp([[{ traceId: otelIdOf(traceId) }]]), field(15, padding)]);
      for (const [encoding, encode] of [['gzip', gzipSync], ['deflate', deflateSync]] as const) {
        const compressed = encode(bomb);
        expect(compressed.length).toBeLessThan(4096);
        const res = await sendOtlp(own, compressed, { 'content-encoding': encoding });
        expect(res.status, res.text).toBe(413);
        expect(res.text).toMatch(/maxDecompressedBody/);
      }
      expect((await traceIn(traceId)).status).not.toBe(200);
      // The same body uncompressed is not decompressed, and is bounded by maxCheckedBody only.
      expect((await sendOtlp(own, bomb)).status).toBe(200);
    });

    // ---- a gateway does not keep believing what moved ----

    it('reads a trace where it is now: after MLflow moved her trace into a hidden experiment, she can no longer read it', async () => {
      const traceId = newTraceId();
      const start = await gw.request('/api/3.0/mlflow/traces', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(startTraceBody(traceId, own, { request_preview: 'soon-hidden' })) });
      expect(start.status, start.text).toBe(200);
      const read = () => gw.request(`/api/3.0/mlflow/traces/${traceId}`, { headers: { authorization: mallory } });
      expect((await read()).status).toBe(200);
      // Moved by someone else (through another gateway replica, or by an admin).
      expect((await direct.call('POST', '/api/3.0/mlflow/traces', startTraceBody(traceId, hidden))).status).toBe(200);
      const after = await read();
      expect(after.status, after.text).toBe(403);
      expect(after.text).not.toContain('soon-hidden');
    });

    it('checks a dataset on the experiments it is in now, not where this gateway last saw it', async () => {
      const created = await gw.request('/api/3.0/mlflow/datasets/create', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ name: `ds-${tag}`, experiment_ids: [own] }) });
      expect(created.status, created.text).toBe(200);
      const datasetId = created.json<{ dataset: { dataset_id: string } }>().dataset.dataset_id;
      const read = () => gw.request(`/api/3.0/mlflow/datasets/${datasetId}`, { headers: { authorization: mallory } });
      expect((await read()).status).toBe(200);
      expect((await direct.call('POST', `/api/3.0/mlflow/datasets/${datasetId}/add-experiments`, { dataset_id: datasetId, experiment_ids: [hidden] })).status).toBe(200);
      expect((await direct.call('POST', `/api/3.0/mlflow/datasets/${datasetId}/remove-experiments`, { dataset_id: datasetId, experiment_ids: [own] })).status).toBe(200);
      expect((await read()).status).toBe(403);
    });

    // ---- the real client ----

    it('keeps the real client\'s tracing working for an ordinary user: spans over OTLP, the trace\'s start re-sent, read back', async () => {
      const certPath = join(gw.dir, 'certs', 'mlgate.crt');
      const run = await runMlflowClient<{ trace_ids: string[]; read_back: { trace_id: string; experiment_id: string; spans: string[] }[] }>(
        server, 'trace_client.py', { trackingUri: gw.url, basic: ['mallory', 'mallory-password'], certPath }, { experiment: `mallory-traces-${tag}` }, 60_000);
      expect(run.result.trace_ids).toHaveLength(2);
      for (const traceId of run.result.trace_ids) {
        const seen = await traceIn(traceId);
        expect(seen.experiment, traceId).toBe(own);
        expect(seen.spans).toBeGreaterThanOrEqual(2);
      }
      expect(run.result.read_back.map((t) => t.experiment_id)).toEqual([own, own]);
      expect(run.result.read_back[0]!.spans).toEqual(expect.arrayContaining(['predict', 'inner']));
      // The spans went over OTLP through the gateway, as mallory.
      expect(gw.logs.some((line) => line.msg === 'request' && line.path === '/v1/traces' && line.status === 200 && line.user === 'mallory')).toBe(true);
    }, 90_000);
  });
}
