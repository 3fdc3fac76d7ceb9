import https from 'node:https';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { freePort } from './helpers/tls.ts';

const ALICE: [string, string] = ['alice', 'alice-password'];
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/';
const LIMIT = 1_000_000;

let upstream: MlflowUpstream;
/** proxy.timeout 300ms and proxy.maxBodySize 1 MB. */
// Transport tests: alice is an admin, so per-user authorization (test/access-control.test.ts) stays out of the way.
const POLICY = { admins: ['alice'] };
let gw: TestGateway;
/** Points at a port nothing listens on. */
let orphan: TestGateway;
let deadUpstream: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, policy: POLICY, config: { proxy: { timeout: '300ms', maxBodySize: LIMIT } } });
  deadUpstream = `http://127.0.0.1:${await freePort()}`;
  orphan = await startTestGateway({ upstream: deadUpstream, policy: POLICY });
});
afterAll(async () => {
  await gw?.close();
  await orphan?.close();
  await upstream?.close();
});


/** The gateway still proxies ordinary requests after whatever the test did to it. */
async function expectStillServing(target: TestGateway): Promise<void> {
  const res = await target.request('/echo', { auth: ALICE });
  expect(res.status).toBe(200);
  expect(res.json<{ method: string }>().method).toBe('GET');
}

/** Fails with a message instead of letting a hung transfer run into the test timeout. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `total` bytes in 64 KiB chunks, made as they are read. */
function generated(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 3);
  let left = total;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      this.push(piece);
    },
  });
}

describe('upstream not running', () => {
  it('answers 502 in MLflow\'s JSON shape on API paths, naming the upstream and how to start it', async () => {
    for (const path of ['/api/2.0/mlflow/experiments/search', '/ajax-api/2.0/mlflow/experiments/search']) {
      const res = await orphan.request(path, { method: 'POST', auth: ALICE, headers: { accept: 'text/html' }, body: '{}' });
      expect(res.status, path).toBe(502);
      expect(res.headers['content-type']).toBe('application/json');
      const body = res.json<{ error_code: string; message: string }>();
      expect(body.error_code).toBe('TEMPORARILY_UNAVAILABLE');
      expect(body.message).toContain(deadUpstream);
      expect(body.message).toContain('ECONNREFUSED');
      expect(body.message).toContain(`mlflow server --host 127.0.0.1 --port ${new URL(deadUpstream).port}`);
    }
    await waitForLog(orphan.logs, (l) => l.level === 40 && String(l.msg).includes(deadUpstream));
  });

  it('shows a browser a readable page instead', async () => {
    const res = await orphan.request('/', { auth: ALICE, headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('MLflow is unreachable');
    expect(res.text).toContain(deadUpstream);
    expect(res.text).toContain('mlflow server');
  });

  it('keeps answering: its own routes, and each new request with a fresh 502', async () => {
    const health = await orphan.request('/-/healthz');
    expect(health.status).toBe(200);
    expect((await orphan.request('/echo', { auth: ALICE })).status).toBe(502);
  });
});

describe('upstream too slow', () => {
  it('answers 504 after proxy.timeout in MLflow\'s JSON shape, naming the upstream', async () => {
    const started = performance.now();
    const res = await gw.request('/api/2.0/mlflow/slow?ms=3000', { auth: ALICE });
    const elapsed = performance.now() - started;
    expect(res.status).toBe(504);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2500);
    const body = res.json<{ error_code: string; message: string }>();
    expect(body.error_code).toBe('TEMPORARILY_UNAVAILABLE');
    expect(body.message).toContain(upstream.url);
    expect(body.message).toContain('proxy.timeout');
    await expectStillServing(gw);
  });

  it('waits for an upstream that answers within the timeout', async () => {
    const res = await gw.request('/api/2.0/mlflow/slow?ms=100', { auth: ALICE });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ slow: true });
  });
});

describe('proxy.maxBodySize', () => {
  it('refuses a declared Content-Length over the limit with 413 before anything reaches the upstream', async () => {
    const path = `${ARTIFACTS}1/run/artifacts/declared-too-large.bin`;
    const res = await gw.request(path, { method: 'PUT', auth: ALICE, body: Buffer.alloc(LIMIT + 1) });
    expect(res.status).toBe(413);
    expect(res.json()).toEqual({ error_code: 'RESOURCE_EXHAUSTED', message: `request body larger than the gateway's limit of ${LIMIT} bytes (proxy.maxBodySize)` });
    expect(upstream.requests.some((r) => r.url === path)).toBe(false);
    await expectStillServing(gw);
  });

  it('refuses a chunked body that grows past the limit with 413 and aborts the upstream request', async () => {
    const path = `${ARTIFACTS}1/run/artifacts/chunked-too-large.bin`;
    const outcome = upstream.transferOutcome(path.slice(ARTIFACTS.length));
    const res = await gw.request(path, { method: 'PUT', auth: ALICE, headers: { 'transfer-encoding': 'chunked' }, body: generated(4 * LIMIT) });
    expect(res.status).toBe(413);
    expect(res.json<{ error_code: string }>().error_code).toBe('RESOURCE_EXHAUSTED');
    const seen = await within(outcome, 5000, 'the upstream request closing');
    expect(seen.completed).toBe(false);
    expect(seen.bytes).toBeLessThanOrEqual(LIMIT);
    expect(upstream.artifacts.has(path.slice(ARTIFACTS.length))).toBe(false);
    await expectStillServing(gw);
  });

  it('refuses a chunked body over the limit that arrived whole before the upstream connection did', async () => {
    // A body this small sits in the gateway's buffer by the time authentication is done, so it is
    // counted before http-proxy has an upstream request to destroy.
    const tiny = await startTestGateway({ upstream: upstream.url, policy: POLICY, config: { proxy: { maxBodySize: 1000 } } });
    try {
      const path = `${ARTIFACTS}1/run/artifacts/buffered-too-large.bin`;
      const res = await tiny.request(path, { method: 'PUT', auth: ALICE, headers: { 'transfer-encoding': 'chunked' }, body: Buffer.alloc(5000, 2) });
      expect(res.status).toBe(413);
      expect(upstream.artifacts.has(path.slice(ARTIFACTS.length))).toBe(false);
    } finally {
      await tiny.close();
    }
  });

  it('forwards a chunked body under the limit whole', async () => {
    const path = `${ARTIFACTS}1/run/artifacts/small.bin`;
    const res = await gw.request(path, { method: 'PUT', auth: ALICE, headers: { 'transfer-encoding': 'chunked' }, body: generated(LIMIT - 10) });
    expect(res.status).toBe(200);
    expect(upstream.artifacts.get(path.slice(ARTIFACTS.length))?.bytes).toBe(LIMIT - 10);
  });
});

describe('connections cut mid-transfer', () => {
  it('aborts the upstream request when the client leaves mid-upload, and logs the request as aborted', async () => {
    const path = `${ARTIFACTS}1/run/artifacts/abandoned.bin`;
    const artifact = path.slice(ARTIFACTS.length);
    const firstByte = upstream.firstArtifactByte(artifact);
    const outcome = upstream.transferOutcome(artifact);
    // A body that never ends: the client stops sending and then goes away.
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(256 * 1024, 1));
    // The shared gateway's 300 ms proxy.timeout would end a stalled upload by itself; here only the
    // client's leaving can.
    const unlimited = await startTestGateway({ upstream: upstream.url, policy: POLICY });
    try {
      const req = https.request(`${unlimited.url}${path}`, { method: 'PUT', ca: unlimited.ca, headers: { authorization: basic(...ALICE), 'x-request-id': 'abandoned-upload' } });
      req.on('error', () => {});
      body.pipe(req);
      await within(firstByte, 5000, 'the first byte reaching the upstream');
      req.destroy();

      const seen = await within(outcome, 5000, 'the upstream request closing');
      expect(seen.completed).toBe(false);
      expect(seen.bytes).toBeGreaterThan(0);
      expect(seen.bytes).toBeLessThanOrEqual(256 * 1024);
      const line = await waitForLog(unlimited.logs, (l) => l.reqId === 'abandoned-upload' && l.msg === 'request');
      expect(line).toMatchObject({ path, aborted: true, status: 499, user: 'alice' });
      await expectStillServing(unlimited);
    } finally {
      await unlimited.close();
    }
  });

  it('stops the upstream download when the client leaves mid-download', async () => {
    const artifact = `1/run/artifacts/generated-${200 * 1024 * 1024}.bin`;
    const outcome = upstream.transferOutcome(artifact);
    await new Promise<void>((resolve, reject) => {
      const req = https.get(`${gw.url}${ARTIFACTS}${artifact}`, { ca: gw.ca, headers: { authorization: basic(...ALICE) } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => { if (!req.destroyed) reject(err); });
    });
    const seen = await within(outcome, 5000, 'the upstream download being cut off');
    expect(seen.completed).toBe(false);
    expect(seen.bytes).toBeLessThan(200 * 1024 * 1024);
    await expectStillServing(gw);
  });

  it('cuts the client off instead of leaving it waiting when the upstream dies mid-answer', async () => {
    const started = performance.now();
    const outcome = await gw.request('/truncated?bytes=65536', { auth: ALICE, timeoutMs: 10_000 }).then(
      (res) => `answered ${res.status} with ${res.body.length} bytes`,
      (err: Error) => err.message,
    );
    expect(outcome).not.toContain('no answer in');
    expect(outcome).toMatch(/aborted|ECONNRESET|socket hang up|closed/);
    expect(performance.now() - started).toBeLessThan(5000);
    await expectStillServing(gw);
  });
});

describe('an upstream whose look-up answer never ends', () => {
  it('gives up on it past 256 MiB with a 502 naming the upstream, cutting the answer off, each time', async () => {
    let cutOff = 0;
    const endless = http.createServer((req, res) => {
      if (!req.url!.startsWith('/api/2.0/mlflow/experiments/get')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error_code":"ENDPOINT_NOT_FOUND"}');
        return;
      }
      // A misconfigured upstream answering a look-up with a file: far more than any page of JSON.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.on('close', () => { if (!res.writableFinished) cutOff++; });
      generated(1024 * 2 ** 20).pipe(res);
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    // Not an admin: alice's request needs the experiment looked up first.
    const target = await startTestGateway({ upstream: `http://127.0.0.1:${(endless.address() as AddressInfo).port}`, policy: { admins: [], default: 'READ' } });
    try {
      for (const round of [1, 2]) {
        const res = await target.request(`/api/2.0/mlflow/experiments/get?experiment_id=${round}`, { auth: ALICE, timeoutMs: 30_000 });
        expect(res.status, res.text).toBe(502);
        expect(res.json<{ message: string }>().message).toMatch(/MLflow tracking server at http:\/\/127\.0\.0\.1:\d+ answered GET \/api\/2\.0\/mlflow\/experiments\/get with more than 256 MiB/);
        await within((async () => { while (cutOff < round) await new Promise((resolve) => setTimeout(resolve, 20)); })(), 5000, 'the upstream answer being cut off');
      }
    } finally {
      await target.close();
      endless.closeAllConnections();
      await new Promise((resolve) => endless.close(resolve));
    }
  });
});
