import { describe, expect, it } from 'vitest';
import { waitForLog } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { gatewayWithUpstream } from './helpers/fixture.ts';

const fixture = gatewayWithUpstream({ users: { alice: 'alice-password', bob: 'bob-password' } });

describe('Basic authentication against the htpasswd file', () => {
  it('forwards an MLflow API call with the right password, naming the user upstream', async () => {
    const res = await fixture.gw.request('/api/2.0/mlflow/experiments/create', {
      method: 'POST', auth: ['alice', 'alice-password'], headers: { 'content-type': 'application/json' }, body: '{"name":"exp-a"}',
    });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ experiment_id: '1' });
    const seen = fixture.upstream.requests.at(-1)!;
    // The gateway makes the creator the owner (test/access-control.test.ts).
    expect(JSON.parse(seen.body)).toEqual({ name: 'exp-a', tags: [{ key: 'mlgate.owner', value: 'alice' }] });
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers.authorization).toBeUndefined();
  });

  it('refuses a wrong password with 401, a Basic challenge and MLflow JSON', async () => {
    const before = fixture.upstream.requests.length;
    const res = await fixture.gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: ['alice', 'wrong'], body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="MLflow", charset="UTF-8"');
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'invalid user name or password' });
    expect(fixture.upstream.requests.length).toBe(before);
  });

  it('refuses an unknown user exactly like a wrong password, after checking a hash all the same', async () => {
    const before = fixture.gw.gateway.passwordChecker.verifications;
    const res = await fixture.gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: ['mallory', 'alice-password'], body: '{}' });
    expect(fixture.gw.gateway.passwordChecker.verifications).toBe(before + 1);
    expect(res.status).toBe(401);
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'invalid user name or password' });
  });

  it('asks for credentials when none are sent, with an HTML page for browsers', async () => {
    const api = await fixture.gw.request('/ajax-api/2.0/mlflow/experiments/search', { method: 'POST', body: '{}' });
    expect(api.status).toBe(401);
    expect(api.json<{ error_code: string }>().error_code).toBe('UNAUTHENTICATED');
    // A POST: a browser's GET of a page goes to the sign-in page instead (browser-sign-in.test.ts).
    const page = await fixture.gw.request('/', { method: 'POST', headers: { accept: 'text/html' } });
    expect(page.status).toBe(401);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('Sign-in required');
    expect(page.headers['www-authenticate']).toMatch(/^Basic realm=/);
  });

  it('does not run the hash again for a cached credential', async () => {
    await fixture.gw.request('/echo', { auth: ['bob', 'bob-password'] });
    const after = fixture.gw.gateway.passwordChecker.verifications;
    for (let i = 0; i < 5; i++) expect((await fixture.gw.request('/echo', { auth: ['bob', 'bob-password'] })).status).toBe(200);
    expect(fixture.gw.gateway.passwordChecker.verifications).toBe(after);
  });

  it('logs the request with user and auth method and never the credentials', async () => {
    const res = await fixture.gw.request('/echo?secret=query', { headers: { authorization: basic('alice', 'alice-password'), 'x-request-id': 'req-123' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('req-123');
    const line = await waitForLog(fixture.gw.logs, (l) => l.reqId === 'req-123');
    expect(line).toMatchObject({ msg: 'request', method: 'GET', path: '/echo', status: 200, user: 'alice', auth: 'basic', ip: '127.0.0.1' });
    const all = JSON.stringify(fixture.gw.logs);
    expect(all).not.toContain('alice-password');
    expect(all).not.toContain(basic('alice', 'alice-password').slice(6));
    expect(all).not.toContain('secret=query');
  });
});
