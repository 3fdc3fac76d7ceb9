// Client certificates (mutual TLS): certificates made by `openssl ca` as an administrator would,
// presented by a Node HTTPS client that verifies the gateway in turn. The user is taken from the
// certificate, a revoked one is refused (also after the CRL is edited while the gateway runs), and
// every refusal is a 401 in MLflow's JSON that says why.
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeClientCa, type ClientCa, type ClientCertificate } from './helpers/client-pki.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { request, type RequestOptions } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { hasOpenssl } from './helpers/tls.ts';
import { loadConfig } from '../src/config/load.ts';
import { generateSelfSignedCertificate } from '../src/server/certificate.ts';

let upstream: MlflowUpstream;
let work: string;
let ca: ClientCa;
let otherCa: ClientCa;
let alice: ClientCertificate;
let bob: ClientCertificate;
let carol: ClientCertificate;
let admin: ClientCertificate;
let stranger: ClientCertificate;
let crl: string;
const gateways: TestGateway[] = [];

async function gateway(clientCertificates: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password', admin: 'admin-password' }, config: { tls: { clientCertificates }, ...extra } });
  gateways.push(gw);
  return gw;
}

/** A request on its own connection, presenting `who`'s certificate (or none). */
function withCertificate(gw: TestGateway, path: string, who: ClientCertificate | undefined, options: RequestOptions = {}) {
  const agent = new https.Agent(who ? { cert: readFileSync(who.cert), key: readFileSync(who.key), maxSockets: 1 } : {});
  return request(gw.url + path, { ca: gw.ca, agent, ...options }).finally(() => agent.destroy());
}

const lastAccess = (gw: TestGateway) => gw.logs.filter((line) => line.msg === 'request').at(-1)!;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  work = mkdtempSync(join(tmpdir(), 'mlgate-client-certs-'));
  if (!hasOpenssl()) return;
  ca = makeClientCa(work, 'team');
  otherCa = makeClientCa(work, 'other');
  alice = ca.issue('alice', { cn: 'alice', email: 'alice@example.com', uri: 'spiffe://example.com/user/alice', ou: ['ml-team', 'readers'] });
  bob = ca.issue('bob', { cn: 'bob', email: 'bob@example.com' });
  carol = ca.issue('carol', { cn: 'carol' });
  admin = ca.issue('admin', { cn: 'admin' });
  stranger = otherCa.issue('alice-elsewhere', { cn: 'alice' });
  ca.revoke(bob);
  crl = join(work, 'team.crl');
  ca.publishCrl(crl);
});
afterAll(async () => {
  await Promise.all(gateways.map((gw) => gw.close(0)));
  await upstream.close();
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!hasOpenssl())('client certificates', () => {
  it('a verified certificate signs its CN in: MLflow gets the user header, the access log says client-cert', async () => {
    const gw = await gateway({ ca: ca.cert, crl });
    const res = await withCertificate(gw, '/echo', alice);
    expect(res.status).toBe(200);
    expect(res.json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('alice');
    expect(lastAccess(gw)).toMatchObject({ user: 'alice', auth: 'client-cert', status: 200 });

    const api = await withCertificate(gw, '/api/2.0/mlflow/experiments/search?max_results=5', alice);
    expect(api.status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('alice');
    expect(await waitForLog(gw.logs, (line) => line.msg === 'client certificates asked for (mutual TLS)')).toMatchObject({ mode: 'optional', user: 'cn', revoked: 1 });
  });

  it('user: email and uri take the subjectAltName; groups: ou makes each OU a group', async () => {
    // Admins by group: alice's certificate carries OU=ml-team, bob's and carol's none.
    const byEmail = await startTestGateway({ upstream: upstream.url, policy: { admins: ['@ml-team'] }, config: { tls: { clientCertificates: { ca: ca.cert, user: 'email', groups: 'ou' } } } });
    gateways.push(byEmail);
    const res = await withCertificate(byEmail, '/echo', alice);
    expect(res.json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('alice@example.com');
    expect((await withCertificate(byEmail, '/api/2.0/mlflow/webhooks', alice)).status).not.toBe(403);
    const notAdmin = await withCertificate(byEmail, '/api/2.0/mlflow/webhooks', admin);
    expect(notAdmin.status).toBe(401); // no e-mail address in it: names nobody here
    const byUri = await gateway({ ca: ca.cert, user: 'uri' });
    expect((await withCertificate(byUri, '/echo', alice)).json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('spiffe://example.com/user/alice');

    const refused = await withCertificate(byUri, '/api/2.0/mlflow/experiments/search', carol);
    expect(refused.status).toBe(401);
    expect(refused.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'client certificate refused: it has no subjectAltName URI, which names the user here (tls.clientCertificates.user: uri)' });
  });

  it('a certificate naming a user with an identity provider\'s name prefix is refused: it would be that provider\'s user', async () => {
    const impostor = ca.issue('impostor', { cn: 'impostor', uri: 'okta:alice' });
    // The provider is never asked (discovery is on first sign-in): only its namePrefix matters here.
    const gw = await gateway({ ca: ca.cert, user: 'uri' }, { oidc: { providers: [{ name: 'okta', issuer: 'https://127.0.0.1:1/oauth2/default', clientId: 'mlgate', namePrefix: 'okta:' }] } });
    const refused = await withCertificate(gw, '/api/2.0/mlflow/experiments/search', impostor);
    expect(refused.status).toBe(401);
    expect(refused.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'client certificate refused: its subjectAltName URI "okta:alice" starts with "okta:", an identity provider\'s name prefix: it would be that provider\'s user' });
    expect((await withCertificate(gw, '/echo', alice)).json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('spiffe://example.com/user/alice');
  });

  it('mode optional: without a certificate a password still works; mode required: a 401 that says what to set', async () => {
    const optional = await gateway({ ca: ca.cert });
    expect((await withCertificate(optional, '/echo', undefined, { auth: ['alice', 'alice-password'] })).status).toBe(200);
    expect(lastAccess(optional)).toMatchObject({ user: 'alice', auth: 'basic' });

    const required = await gateway({ ca: ca.cert, crl, mode: 'required' });
    const res = await withCertificate(required, '/api/2.0/mlflow/experiments/search', undefined, { auth: ['alice', 'alice-password'] });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(res.json<{ error_code: string; message: string }>()).toEqual({
      error_code: 'UNAUTHENTICATED',
      message: expect.stringMatching(/^a client certificate is required \(tls\.clientCertificates\.mode: required\).*MLFLOW_TRACKING_CLIENT_CERT_PATH/),
    });
    expect((await withCertificate(required, '/echo', alice)).status).toBe(200);
  });

  it('the certificate wins over an Authorization header, which is not checked', async () => {
    const gw = await gateway({ ca: ca.cert, crl });
    const res = await withCertificate(gw, '/echo', alice, { auth: ['admin', 'wrong-password'] });
    expect(res.status).toBe(200);
    expect(res.json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('alice');
  });

  it('refuses a revoked certificate, and one from a CA it does not trust, saying why', async () => {
    const gw = await gateway({ ca: ca.cert, crl });
    const revoked = await withCertificate(gw, '/api/2.0/mlflow/experiments/search', bob, { auth: ['alice', 'alice-password'] });
    expect(revoked.status).toBe(401);
    expect(revoked.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'client certificate refused: it has been revoked (tls.clientCertificates.crl)' });
    expect(await waitForLog(gw.logs, (line) => line.msg === 'client certificate refused')).toMatchObject({ subject: 'bob', serialNumber: '1001' });

    const foreign = await withCertificate(gw, '/api/2.0/mlflow/experiments/search', stranger);
    expect(foreign.status).toBe(401);
    expect(foreign.json<{ message: string }>().message).toMatch(/^client certificate refused: .*not issued by a CA this gateway trusts/);

    // Without a CRL the same stranger is refused for its issuer alone.
    const noCrl = await gateway({ ca: ca.cert });
    expect((await withCertificate(noCrl, '/api/2.0/mlflow/experiments/search', stranger)).json<{ message: string }>().message)
      .toBe('client certificate refused: it was not issued by a CA this gateway trusts (tls.clientCertificates.ca)');
  });

  it('a CRL edited while the gateway runs applies without a restart, to open connections too', async () => {
    const gw = await gateway({ ca: ca.cert, crl });
    const kept = new https.Agent({ cert: readFileSync(carol.cert), key: readFileSync(carol.key), keepAlive: true, maxSockets: 1 });
    const search = `${gw.url}/api/2.0/mlflow/experiments/search?max_results=5`;
    try {
      const before = await request(search, { ca: gw.ca, agent: kept });
      expect(before.status).toBe(200);

      ca.revoke(carol);
      const next = join(work, 'team.crl.new');
      ca.publishCrl(next);
      renameSync(next, crl);
      expect(await waitForLog(gw.logs, (line) => line.msg === 'client certificate CA and CRL reloaded')).toMatchObject({ revoked: 2 });

      // The connection verified against the old list: refused on its next request.
      const onOpenConnection = await request(search, { ca: gw.ca, agent: kept });
      expect(onOpenConnection.status).toBe(401);
      expect(onOpenConnection.json<{ message: string }>().message).toMatch(/revoked/);
      expect(gw.logs.some((line) => line.msg === 'client certificate revoked while its connection was open')).toBe(true);
      // A new handshake is checked by OpenSSL against the new list.
      expect((await withCertificate(gw, '/api/2.0/mlflow/experiments/search', carol)).json<{ message: string }>().message).toBe('client certificate refused: it has been revoked (tls.clientCertificates.crl)');
      expect((await withCertificate(gw, '/echo', alice)).status).toBe(200);
    } finally {
      kept.destroy();
    }
  });

  it('a CRL past its nextUpdate refuses every certificate, with a warning at start and a reason that says so', async () => {
    const stale = join(work, 'stale.crl');
    ca.publishCrl(stale, 1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const gw = await gateway({ ca: ca.cert, crl: stale });
    expect(gw.logs.some((line) => line.level === 40 && String(line.msg).startsWith('the client certificate revocation list is past its nextUpdate'))).toBe(true);
    const res = await withCertificate(gw, '/api/2.0/mlflow/experiments/search', alice);
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: "client certificate refused: the gateway's certificate revocation list has expired (tls.clientCertificates.crl needs a fresh one)" });
  });

  it('a renewed server certificate keeps the client CA and CRL on the listener', async () => {
    const gw = await gateway({ ca: ca.cert, crl, mode: 'required' });
    const certs = join(gw.dir, 'certs');
    await generateSelfSignedCertificate({ cert: join(certs, 'mlgate.crt'), key: join(certs, 'mlgate.key') }, ['localhost', '127.0.0.1']);
    await waitForLog(gw.logs, (line) => line.msg === 'TLS certificate reloaded');
    const renewed = { ...gw, ca: readFileSync(join(certs, 'mlgate.crt'), 'utf8') };
    expect((await withCertificate(renewed, '/echo', alice)).status).toBe(200);
    expect((await withCertificate(renewed, '/api/2.0/mlflow/experiments/search', stranger)).json<{ message: string }>().message).toMatch(/not issued by a CA this gateway trusts/);
    expect((await withCertificate(renewed, '/api/2.0/mlflow/experiments/search', undefined)).status).toBe(401);
  });

  it('a certificate whose CN is "admin" is not the htpasswd admin of the built-in policy', async () => {
    const gw = await gateway({ ca: ca.cert });
    const byCertificate = await withCertificate(gw, '/api/2.0/mlflow/webhooks', admin);
    expect(byCertificate.status).toBe(403);
    expect(lastAccess(gw)).toMatchObject({ user: 'admin', auth: 'client-cert' });
    const byPassword = await withCertificate(gw, '/api/2.0/mlflow/webhooks', undefined, { auth: ['admin', 'admin-password'] });
    expect(byPassword.status).not.toBe(403);
  });

  it('a browser-style cross-site POST with the certificate is refused, like a remembered password', async () => {
    const gw = await gateway({ ca: ca.cert });
    const res = await withCertificate(gw, '/api/2.0/mlflow/experiments/create', alice, {
      method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{"name":"x"}',
    });
    expect(res.status).toBe(403);
    expect(res.json<{ message: string }>().message).toMatch(/^cross-site request refused: Origin https:\/\/evil\.example/);
  });

  it('configuration: TLS must be on, a CRL needs a CA, a file that is not a CA bundle stops start-up', () => {
    const problems = (yaml: string) => {
      const configPath = join(work, `config-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(configPath, yaml);
      try {
        loadConfig({ configPath, env: {}, cwd: work });
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(problems('tls:\n  enabled: false\n  clientCertificates:\n    ca: /etc/ca.pem\n')).toMatch(/:4: tls\.clientCertificates\.ca: needs TLS on \(tls\.enabled: true\)/);
    expect(problems('tls:\n  clientCertificates:\n    crl: /etc/ca.crl\n')).toMatch(/:3: tls\.clientCertificates\.crl: is set but client certificates are off/);
    expect(problems('tls:\n  clientCertificates:\n    ca: /etc/ca.pem\n    user: dn\n')).toMatch(/:4: tls\.clientCertificates\.user: must be one of "cn", "email", "uri"/);
  });

  it('a leaf certificate as the CA bundle, or a CRL file that is not one, stops start-up naming the file', async () => {
    await expect(startTestGateway({ upstream: upstream.url, config: { tls: { clientCertificates: { ca: alice.cert } } } })).rejects.toThrow(/tls\.clientCertificates\.ca .*alice\.crt: CN=alice.* is not a CA certificate/);
    await expect(startTestGateway({ upstream: upstream.url, config: { tls: { clientCertificates: { ca: ca.cert, crl: ca.cert } } } })).rejects.toThrow(/tls\.clientCertificates\.crl .*ca\.crt: holds no PEM certificate revocation list/);
  });
});
