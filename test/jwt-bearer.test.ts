// JWTs from an identity provider as bearer tokens: a shared secret, a PEM public key made with
// openssl, and a JWKS served over HTTP with key rotation. Every refusal says why, in the
// WWW-Authenticate error_description and in MLflow's JSON.
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const SECRET = 'a-shared-secret-of-at-least-32-characters!';
const ISSUER = 'https://idp.test/realms/ml';
const now = () => Math.floor(Date.now() / 1000);

let upstream: MlflowUpstream;
let keyDir: string;
let esPrivate: CryptoKey;
let esPublicPem: string;
let hs: TestGateway;
let es: TestGateway;

async function sign(claims: JWTPayload, key: CryptoKey | Uint8Array, header: { alg: string; kid?: string }): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}
const secretBytes = (text: string) => new TextEncoder().encode(text);

/** What a Keycloak-like provider puts in an access token for alice. */
function aliceClaims(overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: ISSUER, aud: 'mlflow', sub: 'f3a1-alice', preferred_username: 'alice',
    realm_access: { roles: ['ml-team', 'admins'] }, iat: now(), exp: now() + 300, ...overrides,
  };
}

/** An ES256 key pair the way the README makes one (openssl), or with jose where openssl is missing. */
async function esKeyPair(dir: string): Promise<{ privatePem: string; publicPem: string }> {
  const keyFile = join(dir, 'jwt.key');
  const pubFile = join(dir, 'jwt.pub');
  const made = spawnSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile]).status === 0
    && spawnSync('openssl', ['pkey', '-in', keyFile, '-pubout', '-out', pubFile]).status === 0;
  if (!made) {
    const pair = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(keyFile, await exportPKCS8(pair.privateKey));
    writeFileSync(pubFile, await exportSPKI(pair.publicKey));
  }
  return { privatePem: readFileSync(keyFile, 'utf8'), publicPem: readFileSync(pubFile, 'utf8') };
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  keyDir = mkdtempSync(join(tmpdir(), 'mlgate-jwt-'));
  const pair = await esKeyPair(keyDir);
  esPrivate = await importPKCS8(pair.privatePem, 'ES256');
  esPublicPem = pair.publicPem;
  [hs, es] = await Promise.all([
    startTestGateway({
      upstream: upstream.url,
      config: {
        jwt: {
          secret: SECRET, issuer: ISSUER, audience: ['mlflow'], algorithms: ['HS256'], clockTolerance: '0s',
          userClaim: 'preferred_username', groupsClaim: 'realm_access.roles',
        },
      },
    }),
    startTestGateway({ upstream: upstream.url, config: { jwt: { publicKey: join(keyDir, 'jwt.pub'), audience: ['mlflow'] } } }),
  ]);
});
afterAll(async () => {
  await Promise.all([hs?.close(), es?.close()]);
  await upstream.close();
  rmSync(keyDir, { recursive: true, force: true });
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('a JWT signed with the shared secret (HS256)', () => {
  it('is accepted as the user its configured claim names, with the groups of its configured claim', async () => {
    const token = await sign(aliceClaims(), secretBytes(SECRET), { alg: 'HS256' });
    const res = await hs.request('/api/2.0/mlflow/experiments/create', {
      method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: '{"name":"sso-exp"}',
    });
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('alice');
    expect(upstream.requests.at(-1)!.headers.authorization).toBeUndefined();
    const whoami = await hs.request('/-/whoami', { headers: bearer(token) });
    expect(whoami.json()).toEqual({ user: 'alice', groups: ['ml-team', 'admins'], method: 'bearer' });
  });

  const refusals: [string, () => Promise<string>, string][] = [
    ['expired', () => sign(aliceClaims({ exp: now() - 60 }), secretBytes(SECRET), { alg: 'HS256' }), 'the token has expired'],
    ['not valid yet', () => sign(aliceClaims({ nbf: now() + 600 }), secretBytes(SECRET), { alg: 'HS256' }), 'the token is not valid yet (nbf is in the future)'],
    ['for another audience', () => sign(aliceClaims({ aud: 'grafana' }), secretBytes(SECRET), { alg: 'HS256' }), 'the token is meant for another audience (aud)'],
    ['without an audience', () => sign(aliceClaims({ aud: undefined }), secretBytes(SECRET), { alg: 'HS256' }), 'the token has no aud claim'],
    ['from another issuer', () => sign(aliceClaims({ iss: 'https://evil.test' }), secretBytes(SECRET), { alg: 'HS256' }), 'the token is from another issuer (iss)'],
    ['signed with another secret', () => sign(aliceClaims(), secretBytes('another-secret-of-at-least-32-characters'), { alg: 'HS256' }), 'the signature is invalid'],
    ['with a changed payload', async () => {
      const [header, , signature] = (await sign(aliceClaims(), secretBytes(SECRET), { alg: 'HS256' })).split('.');
      const forged = Buffer.from(JSON.stringify(aliceClaims({ preferred_username: 'admin' }))).toString('base64url');
      return `${header}.${forged}.${signature}`;
    }, 'the signature is invalid'],
    ['signed with an algorithm not allowed (HS512)', () => sign(aliceClaims(), secretBytes(SECRET), { alg: 'HS512' }), 'the algorithm HS512 is not allowed (jwt.algorithms: HS256)'],
    ['unsigned (alg none)', async () => {
      const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      return `${part({ alg: 'none', typ: 'JWT' })}.${part(aliceClaims())}.`;
    }, 'the algorithm none is not allowed (jwt.algorithms: HS256)'],
    ['without the user claim', () => sign(aliceClaims({ preferred_username: undefined }), secretBytes(SECRET), { alg: 'HS256' }), 'the token has no preferred_username claim (jwt.userClaim)'],
    ['without an expiry', () => sign(aliceClaims({ exp: undefined }), secretBytes(SECRET), { alg: 'HS256' }), 'the token has no exp claim'],
    ['not a JWT at all', async () => 'eyJub3QiOiJhIGp3dCJ9.garbage', 'the token is not a well-formed JWT'],
  ];

  it.each(refusals)('%s: 401 with error_description and MLflow JSON; MLflow never sees it', async (_name, make, description) => {
    const before = upstream.requests.length;
    const res = await hs.request('/api/2.0/mlflow/runs/create', { method: 'POST', headers: { ...bearer(await make()), 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="MLflow", error="invalid_token", error_description="${description}"`);
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: `invalid bearer token: ${description}` });
    expect(upstream.requests.length).toBe(before);
  });

  it('is remembered once verified, but never past its exp', async () => {
    const token = await sign(aliceClaims({ exp: now() + 2 }), secretBytes(SECRET), { alg: 'HS256' });
    expect((await hs.request('/echo', { headers: bearer(token) })).status).toBe(200);
    expect((await hs.request('/echo', { headers: bearer(token) })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const res = await hs.request('/echo', { headers: bearer(token) });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error_description="the token has expired"');
  });

  it('offers both Basic and Bearer when no credentials are sent; Basic still works beside it', async () => {
    const res = await hs.request('/');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="MLflow", charset="UTF-8", Bearer realm="MLflow"');
    expect((await hs.request('/echo', { auth: ['alice', 'alice-password'] })).status).toBe(200);
  });
});

describe('a JWT signed with an EC key made by openssl (jwt.publicKey: jwt.pub)', () => {
  it('is accepted with ES256, the algorithm derived from the key, naming the user by sub', async () => {
    const token = await sign({ aud: 'mlflow', sub: 'bob', groups: ['data-eng'], exp: now() + 300 }, esPrivate, { alg: 'ES256' });
    const res = await es.request('/-/whoami', { headers: bearer(token) });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ user: 'bob', groups: ['data-eng'], method: 'bearer' });
  });

  it('allows for clock skew (jwt.clockTolerance, 30 s by default)', async () => {
    const token = await sign({ aud: 'mlflow', sub: 'bob', exp: now() - 10 }, esPrivate, { alg: 'ES256' });
    expect((await es.request('/echo', { headers: bearer(token) })).status).toBe(200);
  });

  it('refuses an HS256 token "signed" with the public key (algorithm confusion)', async () => {
    const token = await sign({ aud: 'mlflow', sub: 'mallory', exp: now() + 300 }, secretBytes(esPublicPem), { alg: 'HS256' });
    const res = await es.request('/echo', { headers: bearer(token) });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="MLflow", error="invalid_token", error_description="the algorithm HS256 is not allowed (jwt.algorithms: ES256)"');
  });

  it('refuses a token signed by another EC key', async () => {
    const other = await generateKeyPair('ES256');
    const token = await sign({ aud: 'mlflow', sub: 'bob', exp: now() + 300 }, other.privateKey, { alg: 'ES256' });
    const res = await es.request('/echo', { headers: bearer(token) });
    expect(res.headers['www-authenticate']).toContain('error_description="the signature is invalid"');
  });
});

describe('a JWKS URL (jwt.publicKey: http://127.0.0.1:.../jwks.json)', () => {
  let jwksServer: http.Server;
  let served: { keys: JWK[] } = { keys: [] };
  let failing = false;
  let hits = 0;
  let gw: TestGateway;
  const keys: Record<string, { privateKey: CryptoKey; jwk: JWK }> = {};

  async function makeKey(kid: string, alg: 'ES256' | 'RS256') {
    const pair = await generateKeyPair(alg, { extractable: true });
    keys[kid] = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' } };
  }
  const tokenFor = (kid: string, alg: 'ES256' | 'RS256', sub = 'carol') =>
    sign({ aud: 'mlflow', sub, exp: now() + 300, jti: Math.random().toString(36) }, keys[kid]!.privateKey, { alg, kid });

  beforeAll(async () => {
    await Promise.all([makeKey('2024-a', 'ES256'), makeKey('2025-b', 'RS256')]);
    served = { keys: [keys['2024-a']!.jwk] };
    jwksServer = http.createServer((req, res) => {
      hits++;
      if (failing) return void res.writeHead(500).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(served));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    gw = await startTestGateway({ upstream: upstream.url, config: { jwt: { publicKey: url, audience: ['mlflow'], jwksCooldown: '1s', jwksCacheMaxAge: '1500ms' } } });
  });
  afterAll(async () => {
    await gw?.close();
    await new Promise((resolve) => jwksServer.close(resolve));
  });

  it('fetches the keys and accepts a token signed by one of them', async () => {
    const res = await gw.request('/echo', { headers: bearer(await tokenFor('2024-a', 'ES256')) });
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('carol');
    expect(hits).toBe(1);
  });

  it('refetches for an unknown kid at most once per jwksCooldown', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the cooldown of the first fetch
    const before = hits;
    const unknownKid = () => sign({ aud: 'mlflow', sub: 'carol', exp: now() + 300 }, keys['2024-a']!.privateKey, { alg: 'ES256', kid: 'no-such-key' });
    for (let i = 0; i < 8; i++) {
      const res = await gw.request('/echo', { headers: bearer(await unknownKid()) });
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toContain('error_description="no signing key matches the token (unknown kid)"');
    }
    expect(hits - before).toBe(1);
  });

  it('picks up a rotated key without a restart, and drops the retired one', async () => {
    served = { keys: [keys['2025-b']!.jwk] };
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const before = hits;
    const res = await gw.request('/-/whoami', { headers: bearer(await tokenFor('2025-b', 'RS256', 'dave')) });
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ user: 'dave' });
    expect(hits).toBe(before + 1);
    const retired = await gw.request('/echo', { headers: bearer(await tokenFor('2024-a', 'ES256')) });
    expect(retired.status).toBe(401);
  });

  it('answers 503 (retried by the client) while the key set cannot be fetched, and keeps using the keys it has', async () => {
    failing = true;
    try {
      await new Promise((resolve) => setTimeout(resolve, 1600)); // the keys are stale (jwksCacheMaxAge) and cannot be refreshed
      expect((await gw.request('/echo', { headers: bearer(await tokenFor('2025-b', 'RS256')) })).status).toBe(200);
      await makeKey('2026-c', 'ES256');
      const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: bearer(await tokenFor('2026-c', 'ES256')), body: '{}' });
      expect(res.status).toBe(503);
      expect(res.json<{ error_code: string }>().error_code).toBe('TEMPORARILY_UNAVAILABLE');
      expect(res.headers['retry-after']).toBe('1');
    } finally {
      failing = false;
    }
  });
});

describe('jwt configuration', () => {
  it('refuses algorithms that do not fit the keys, naming both', async () => {
    const { loadConfig, ConfigError } = await import('../src/config/load.ts');
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-jwt-config-'));
    try {
      writeFileSync(join(dir, 'mlgate.yaml'), 'jwt:\n  publicKey: jwt.pub\n  algorithms: [ES256, HS256, none]\n  issuer: x\n');
      let problems: string[] = [];
      try {
        loadConfig({ configPath: 'mlgate.yaml', env: {}, cwd: dir });
      } catch (err) {
        problems = (err as InstanceType<typeof ConfigError>).problems;
      }
      expect(problems).toEqual([
        'mlgate.yaml:3: jwt.algorithms: HS256 needs jwt.secret (a shared secret); jwt.publicKey verifies RS*, PS*, ES* and EdDSA',
        'mlgate.yaml:3: jwt.algorithms[2]: must be one of "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519", got "none"',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('redacts jwt.secret in config check', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-jwt-config-'));
    try {
      const result = runCli(['config', 'check'], { cwd: dir, env: { MLGATE_JWT_SECRET: SECRET } });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toContain('secret: (redacted)');
      expect(result.stdout).not.toContain(SECRET);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start when a configured algorithm does not fit the PEM key', async () => {
    await expect(startTestGateway({ upstream: upstream.url, config: { jwt: { publicKey: join(keyDir, 'jwt.pub'), algorithms: ['RS256'] } } }))
      .rejects.toThrow('jwt.algorithms: RS256 cannot be verified with the EC P-256 key in jwt.publicKey, which verifies only ES256');
  });
});
