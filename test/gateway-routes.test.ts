// The gateway's own routes under /-/: health for load balancers, readiness, and who am I.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

describe('/-/ routes', () => {
  it('/-/healthz answers without credentials', async () => {
    const res = await gw.request('/-/healthz');
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ok' });
  });

  it('/-/readyz reports whether the upstream answers', async () => {
    const ready = await gw.request('/-/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ready' });

    const orphan = await startTestGateway({ upstream: 'http://127.0.0.1:1' });
    try {
      const res = await orphan.request('/-/readyz');
      expect(res.status).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unavailable', upstream: 'http://127.0.0.1:1: ECONNREFUSED' });
    } finally {
      await orphan.close();
    }
  });

  it('/-/whoami names the authenticated user and needs credentials', async () => {
    const me = await gw.request('/-/whoami', { auth: ['alice', 'alice-password'] });
    expect(me.status).toBe(200);
    expect(me.json()).toEqual({ user: 'alice', groups: [], method: 'basic' });
    const anonymous = await gw.request('/-/whoami');
    expect(anonymous.status).toBe(401);
  });

  it('unknown /-/ paths are the gateway\'s own 404, never forwarded', async () => {
    const before = upstream.requests.length;
    const res = await gw.request('/-/nothing-here', { auth: ['alice', 'alice-password'] });
    expect(res.status).toBe(404);
    expect(res.json()).toMatchObject({ error_code: 'ENDPOINT_NOT_FOUND' });
    expect(upstream.requests.length).toBe(before);
  });
});
