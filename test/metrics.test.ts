// Prometheus metrics at /-/metrics (docs/operations.md "Metrics"): a known sequence of requests
// through a real gateway (real sockets, the MLflow-shaped fake upstream), then a scrape checked for
// exact counts; who may scrape; label values that stay bounded; and every metric the Grafana
// dashboard (deploy/grafana/mlgate-dashboard.json) uses is one a running gateway exports.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from './helpers/cli.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { openWebSocket } from './helpers/websocket-client.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', carol: 'carol-password' };
const ADMIN = basic('admin', 'admin-password');
const ALICE = basic('alice', 'alice-password');
const TOKEN = 'prometheus-scrape-token-0123456789';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ defaultExperiment: true });
  gw = await startTestGateway({
    upstream: upstream.url,
    users: USERS,
    config: { metrics: { token: TOKEN, allowCidrs: ['10.9.9.9/32'] }, lockout: { maxUserFailures: 2 }, authz: { cacheTtl: '1m' } },
  });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** The samples of a scrape: `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    found.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return found;
}

async function scrape(target: TestGateway = gw, headers: Record<string, string> = { authorization: ADMIN }): Promise<Map<string, number>> {
  const res = await target.request('/-/metrics', { headers });
  expect(res.status, res.text).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(res.text);
}

/** Requests are counted when their answer closes, just before their access-log line: wait for the lines. */
async function logged(count: number, path: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (gw.logs.filter((line) => line.path === path && (line.msg === 'request' || line.msg === 'websocket')).length < count) {
    if (Date.now() > deadline) throw new Error(`${count} access-log lines for ${path} did not appear`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('/-/metrics counts a known sequence of requests', () => {
  it('requests by family, method and status; authentications; decisions; cache; lockouts; tunnels; upstream', async () => {
    const get = '/api/2.0/mlflow/experiments/get';
    for (let i = 0; i < 3; i++) expect((await gw.request(`${get}?experiment_id=0`, { headers: { authorization: ALICE } })).status).toBe(200);
    // An admin-only route: alice (not an admin) is refused.
    for (let i = 0; i < 2; i++) expect((await gw.request('/api/2.0/mlflow/webhooks', { headers: { authorization: ALICE } })).status).toBe(403);
    // carol's password guessed twice: her lockout starts; a third try is refused as locked.
    for (let i = 0; i < 3; i++) expect((await gw.request(`${get}?experiment_id=0`, { headers: { authorization: basic('carol', 'guess') } })).status).toBe(401);
    expect((await gw.request(`${get}?experiment_id=0`)).status).toBe(401);
    await logged(3 + 3 + 1, get);
    await logged(2, '/api/2.0/mlflow/webhooks');

    const ws = await openWebSocket(gw, '/ws/echo', { authorization: ALICE });
    const during = await scrape();
    expect(during.get('mlgate_websocket_tunnels')).toBe(1);
    expect(during.get('mlgate_open_connections')).toBeGreaterThanOrEqual(2);
    ws.close();
    await logged(1, '/ws/echo');
    const after = await scrape();

    expect(after.get('mlgate_requests_total{family="experiments",method="GET",status="200"}')).toBe(3);
    expect(after.get('mlgate_requests_total{family="webhooks",method="GET",status="403"}')).toBe(2);
    expect(after.get('mlgate_requests_total{family="api",method="GET",status="401"}')).toBe(4);
    expect(after.get('mlgate_requests_total{family="ui",method="GET",status="101"}')).toBe(1);
    expect(after.get('mlgate_authentications_total{method="basic",result="ok"}')).toBe(3 + 2 + 1);
    expect(after.get('mlgate_authentications_total{method="basic",result="invalid"}')).toBe(2);
    expect(after.get('mlgate_authentications_total{method="basic",result="locked"}')).toBe(1);
    expect(after.get('mlgate_authentications_total{method="none",result="missing"}')).toBe(1);
    expect(after.get('mlgate_authz_decisions_total{family="experiments",decision="allow"}')).toBe(3);
    expect(after.get('mlgate_authz_decisions_total{family="webhooks",decision="deny"}')).toBe(2);
    // The first look-up of experiment 0 goes to MLflow; the next two are answered from the cache.
    expect(after.get('mlgate_authz_cache_total{result="miss"}')).toBe(1);
    expect(after.get('mlgate_authz_cache_total{result="hit"}')).toBe(2);
    expect(after.get('mlgate_authz_lookups_total')).toBeGreaterThanOrEqual(1);
    expect(after.get('mlgate_lockouts_total{scope="user"}')).toBe(1);
    expect(after.get('mlgate_lockouts_total{scope="ip"}')).toBe(0);
    expect(after.get('mlgate_websocket_tunnels')).toBe(0);
    expect(after.get(`mlgate_upstream_up{upstream="${upstream.url}"}`)).toBe(1);
    expect(after.get('mlgate_request_duration_seconds_count{family="experiments"}')).toBe(3);
    expect(after.get('mlgate_upstream_duration_seconds_count{family="experiments"}')).toBe(3);
    expect(after.get('mlgate_request_duration_seconds_bucket{family="experiments",le="+Inf"}')).toBe(3);
    expect(after.get('mlgate_request_duration_seconds_bucket{family="experiments",le="60"}')).toBe(3);
    expect(after.get('mlgate_request_duration_seconds_sum{family="experiments"}')).toBeGreaterThan(0);
    // A tunnel's life is not a request's duration.
    expect(after.has('mlgate_request_duration_seconds_count{family="ui"}')).toBe(false);
    // The first scrape was counted once it closed; user names are never label values.
    expect(after.get('mlgate_requests_total{family="control",method="GET",status="200"}')).toBeGreaterThanOrEqual(1);
    expect([...after.keys()].filter((key) => /alice|carol|admin/.test(key))).toEqual([]);
  });
});

describe('who may scrape', () => {
  it('admins, the token and allowed peers; anyone else 401, a signed-in non-admin 403', async () => {
    expect((await gw.request('/-/metrics')).status).toBe(401);
    expect((await gw.request('/-/metrics', { headers: { authorization: basic('admin', 'wrong') } })).status).toBe(401);
    expect((await gw.request('/-/metrics', { headers: { authorization: 'Bearer not-the-token-at-all' } })).status).toBe(401);
    const refused = await gw.request('/-/metrics', { headers: { authorization: ALICE } });
    expect(refused.status).toBe(403);
    expect(refused.text).not.toContain('mlgate_');
    await scrape(gw, { authorization: ADMIN });
    await scrape(gw, { authorization: `Bearer ${TOKEN}` });
  });

  it('metrics.allowCidrs lets a peer scrape without credentials; metrics.enabled: false makes /-/metrics a 404', async () => {
    const open = await startTestGateway({ upstream: upstream.url, users: USERS, config: { metrics: { allowCidrs: ['127.0.0.0/8'] } } });
    const off = await startTestGateway({ upstream: upstream.url, users: USERS, config: { metrics: { enabled: false } } });
    try {
      const scraped = await scrape(open, {});
      expect(scraped.get(`mlgate_upstream_up{upstream="${upstream.url}"}`)).toBe(1);
      // One registry per gateway: the other gateway's requests are not in this one.
      expect(scraped.get('mlgate_requests_total{family="experiments",method="GET",status="200"}')).toBeUndefined();
      expect((await off.request('/-/metrics', { headers: { authorization: ADMIN } })).status).toBe(404);
    } finally {
      await open.close();
      await off.close();
    }
  });
});

describe('label values stay bounded', () => {
  it('requests to made-up paths add no series', async () => {
    const burst = async (tag: string) => {
      const paths = Array.from({ length: 15 }, (_, i) => [`/${tag}-${i}/page`, `/api/2.0/mlflow/${tag}-${i}`, `/ajax-api/3.0/mlflow/${tag}/${i}`]).flat();
      await Promise.all(paths.map((path) => gw.request(path, { headers: { authorization: ALICE } })));
      await Promise.all(paths.slice(0, 10).map((path) => gw.request(path, { method: 'POST', headers: { authorization: basic('nobody', tag) } })));
      await Promise.all(paths.map((path) => logged(1, path)));
    };
    const series = (scraped: Map<string, number>) => [...scraped.keys()].filter((key) => !key.includes('family="control"')).sort();
    await burst('first');
    const before = series(await scrape());
    await burst('second');
    expect(series(await scrape())).toEqual(before);
  });
});

describe('deploy/grafana/mlgate-dashboard.json', () => {
  it('uses only metrics a running gateway exports', async () => {
    const dashboard = JSON.parse(readFileSync(join(PROJECT_ROOT, 'deploy/grafana/mlgate-dashboard.json'), 'utf8')) as { panels: { targets?: { expr: string }[] }[]; templating: { list: { query?: unknown }[] } };
    const expressions = [
      ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
      ...dashboard.templating.list.map((variable) => variable.query).filter((query): query is string => typeof query === 'string'),
    ];
    const used = new Set(expressions.flatMap((expr) => [...expr.matchAll(/\bmlgate_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))));
    expect(used.size).toBeGreaterThanOrEqual(10);
    const res = await gw.request('/-/metrics', { headers: { authorization: ADMIN } });
    const exported = new Set([...res.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });
});
