// Logs a person can read: one line per request on a terminal, probes kept out of the info level,
// byte counts that match what the gateway itself answered, and /-/whoami in the form asked for.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli, stopCli } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic, request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password' };
const alice = basic('alice', USERS.alice);

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: USERS, tls: false });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** The one access-log line of the request that carried this id. */
async function accessLine(id: string): Promise<Record<string, unknown>> {
  const line = await waitForLog(gw.logs, (l) => l.reqId === id && (l.msg === 'request' || l.msg === 'websocket'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(gw.logs.filter((l) => l.reqId === id && l.msg === 'request')).toHaveLength(1);
  return line;
}

describe('the access log', () => {
  it('counts the bytes of the gateway\'s own answers: health checks, refusals, redirects, whoami', async () => {
    const cases: [string, Parameters<typeof gw.request>[1]][] = [
      ['/-/healthz', {}],
      ['/api/2.0/mlflow/experiments/search', {}], // 401
      ['/', { headers: { accept: 'text/html' } }], // 302 to the sign-in page
      ['/-/whoami', { headers: { authorization: alice } }],
      ['/-/nothing-here', { headers: { authorization: alice } }], // 404
    ];
    for (const [index, [path, options]] of cases.entries()) {
      const id = `bytes-${index}`;
      const res = await gw.request(path, { ...options, headers: { ...options?.headers, 'x-request-id': id } });
      const line = await accessLine(id);
      expect(res.body.length, path).toBeGreaterThan(0);
      expect({ path, status: line.status, bytesOut: line.bytesOut }).toEqual({ path, status: res.status, bytesOut: Buffer.byteLength(res.body) });
    }
  });

  it('keeps health and readiness probes out of the info level; requests people make stay in it', async () => {
    await gw.request('/-/healthz', { headers: { 'x-request-id': 'probe-health' } });
    await gw.request('/-/readyz', { headers: { 'x-request-id': 'probe-ready' } });
    await gw.request('/api/2.0/mlflow/experiments/search', { headers: { 'x-request-id': 'person' } });
    expect((await accessLine('probe-health')).level).toBe(20);
    expect((await accessLine('probe-ready')).level).toBe(20);
    expect((await accessLine('person')).level).toBe(30);
  });
});

describe('/-/whoami', () => {
  it('answers JSON to scripts and curl, a page to a browser', async () => {
    const json = await gw.request('/-/whoami', { headers: { authorization: alice } });
    expect(json.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(json.text)).toEqual({ user: 'alice', groups: [], method: 'basic' });
    const anyType = await gw.request('/-/whoami', { headers: { authorization: alice, accept: '*/*' } });
    expect(anyType.headers['content-type']).toMatch(/^application\/json/);
    const page = await gw.request('/-/whoami', { headers: { authorization: alice, accept: 'text/html,application/xhtml+xml' } });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('Signed in as alice');
  });
});

describe('on a terminal (log.format: pretty)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-logs-'));
    writeFileSync(join(dir, 'htpasswd'), await htpasswdLines(USERS), { mode: 0o600 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one line per request: time, status, method, path, ms, user', async () => {
    const cli = spawnCli(['serve', '--port', '0', '--no-tls', '--htpasswd', join(dir, 'htpasswd'), '--upstream', upstream.url], { cwd: dir, env: { MLGATE_LOG_FORMAT: 'pretty' } });
    try {
      const [, url] = await cli.waitFor(/mlgate listening .*url=(http:\/\/[^\s]+)/);
      await request(`${url}/api/2.0/mlflow/experiments/search?max_results=1`, { headers: { authorization: alice } });
      await request(`${url}/api/2.0/mlflow/experiments/search`);
      await request(`${url}/-/healthz`);
      await cli.waitFor(/ 401 GET \/api\/2\.0\/mlflow\/experiments\/search [\d.]+ ms\n/);
      const lines = cli.output().stdout.split('\n');
      const requests = lines.filter((line) => / (GET|POST) \//.test(line));
      expect(requests).toHaveLength(2);
      expect(requests[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} 200 GET \/api\/2\.0\/mlflow\/experiments\/search [\d.]+ ms alice$/);
      expect(requests[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} 401 GET \/api\/2\.0\/mlflow\/experiments\/search [\d.]+ ms$/);
      // Nothing of the JSON form, and no probe at the info level.
      expect(cli.output().stdout).not.toContain('{"level"');
      expect(cli.output().stdout).not.toContain('/-/healthz');
    } finally {
      await stopCli(cli);
    }
  });
});
