// The gateway's own routes under /-/: health for load balancers, readiness, and who am I.
import { describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.ts';
import { gatewayWithUpstream } from './helpers/fixture.ts';

const fixture = gatewayWithUpstream();

describe('/-/ routes', () => {
  it('/-/healthz answers without credentials', async () => {
    const res = await fixture.gw.request('/-/healthz');
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ok' });
  });

  it('/-/readyz reports whether the upstream answers, naming it only to an admin', async () => {
    const ready = await fixture.gw.request('/-/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', upstreams: 1, answering: 1 });

    const orphan = await startTestGateway({ upstream: 'http://127.0.0.1:1', users: { admin: 'admin-password', alice: 'alice-password' } });
    try {
      const res = await orphan.request('/-/readyz');
      expect(res.status).toBe(503);
      // Unauthenticated callers learn the state, never where MLflow is or what went wrong.
      expect(res.json()).toEqual({ status: 'unavailable', upstreams: 1, answering: 0 });
      expect(res.text).not.toContain('127.0.0.1');
      const user = await orphan.request('/-/readyz', { auth: ['alice', 'alice-password'] });
      expect(user.json()).toEqual({ status: 'unavailable', upstreams: 1, answering: 0 });
      const admin = await orphan.request('/-/readyz', { auth: ['admin', 'admin-password'] });
      expect(admin.status).toBe(503);
      expect(admin.json()).toMatchObject({ status: 'unavailable', upstreams: 1, answering: 0, upstream: 'http://127.0.0.1:1: ECONNREFUSED' });
    } finally {
      await orphan.close();
    }
  });

  it('/-/whoami names the authenticated user and needs credentials', async () => {
    const me = await fixture.gw.request('/-/whoami', { auth: ['alice', 'alice-password'] });
    expect(me.status).toBe(200);
    expect(me.json()).toEqual({ user: 'alice', groups: [], method: 'basic' });
    const anonymous = await fixture.gw.request('/-/whoami');
    expect(anonymous.status).toBe(401);
  });

  it('unknown /-/ paths are the gateway\'s own 404, never forwarded', async () => {
    const before = fixture.upstream.requests.length;
    const res = await fixture.gw.request('/-/nothing-here', { auth: ['alice', 'alice-password'] });
    expect(res.status).toBe(404);
    expect(res.json()).toMatchObject({ error_code: 'ENDPOINT_NOT_FOUND' });
    expect(fixture.upstream.requests.length).toBe(before);
  });
});
