// A real OpenID Connect provider for tests: oidc-provider over HTTPS on 127.0.0.1, with a certificate
// from a test CA (root -> intermediate -> leaf, made with openssl) that the gateway trusts through
// oidc.providers[].ca. Users alice (groups team-a) and bob (no groups); its development sign-in
// page takes any password. `misbehave` makes its token endpoint hand out a bad ID token, re-signed
// so that only the one check under test fails.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, importJWK, SignJWT, type JWK } from 'jose';
import { Provider } from 'oidc-provider';
import { request, type RequestOptions, type TestResponse } from './http-client.ts';
import { makeCertificateChain } from './tls.ts';

export type Misbehaviour = 'none' | 'wrong-audience' | 'wrong-issuer' | 'expired-id-token' | 'wrong-nonce' | 'unknown-kid';

export const IDP_CLIENT_ID = 'mlgate';
export const IDP_CLIENT_SECRET = 'mlgate-test-client-secret';

const USERS: Record<string, Record<string, unknown>> = {
  alice: { preferred_username: 'alice', name: 'Alice', email: 'alice@example.com', email_verified: true, groups: ['team-a'] },
  bob: { preferred_username: 'bob', name: 'Bob', email: 'bob@example.org', email_verified: true, groups: [] },
};

export interface TestIdp {
  issuer: string;
  /** The test root CA's certificate file: what the gateway trusts (oidc.providers[].ca). */
  caFile: string;
  /** The server's leaf certificate (PEM), for Chromium's pinning. */
  leafPem: string;
  misbehave: Misbehaviour;
  /** Requests for the provider's keys (jwks_uri) so far. */
  jwksFetches: number;
  /** Sign-outs the provider completed (its end-session page confirmed). */
  signOuts: number;
  /** The provider's users and their claims, read at each sign-in and refresh: change one's groups, or delete one to disable them. */
  users: Record<string, Record<string, unknown>>;
  /** Whether the token endpoint hands out refresh tokens (rotated at each use); off by default. */
  refreshTokens: boolean;
  /** Refresh-token grants answered so far (whatever the outcome). */
  refreshes: number;
  /** While true the token endpoint answers 503, as a provider that is down. */
  unavailable: boolean;
  /** (Re)builds the provider with the gateway's client: its exact redirect and post-sign-out URIs. */
  configureClient(client: { redirectUris: string[]; postLogoutRedirectUris: string[] }): void;
  /** A request to the provider that trusts its CA. */
  request(url: string, options?: RequestOptions): Promise<TestResponse>;
  close(): Promise<void>;
}

export async function startTestIdp(): Promise<TestIdp> {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-idp-'));
  const certs = makeCertificateChain(dir, 'idp', 'test identity provider');
  const rootPem = readFileSync(certs.root, 'utf8');
  const signing = { ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK), kid: 'key-1', alg: 'RS256', use: 'sig' };
  const stranger = { ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK), kid: 'not-published', alg: 'RS256' };

  let handler: ((req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) | undefined;
  const server = https.createServer({ cert: readFileSync(certs.chain), key: readFileSync(certs.key) }, (req, res) => {
    if (handler) return handler(req, res);
    res.writeHead(503).end('not configured yet');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  /** Re-signs an ID token after changing it, with the published key or (unknown-kid) one the provider never published. */
  async function tamper(idToken: string, mode: Misbehaviour): Promise<string> {
    const claims = decodeJwt(idToken);
    const header = decodeProtectedHeader(idToken);
    const now = Math.floor(Date.now() / 1000);
    if (mode === 'wrong-audience') claims.aud = 'some-other-application';
    if (mode === 'wrong-issuer') claims.iss = 'https://impostor.example.com';
    if (mode === 'wrong-nonce') claims.nonce = 'not-the-nonce-mlgate-sent';
    if (mode === 'expired-id-token') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
    const jwk = mode === 'unknown-kid' ? stranger : signing;
    return new SignJWT(claims).setProtectedHeader({ ...header, alg: 'RS256', kid: jwk.kid }).sign(await importJWK(jwk, 'RS256'));
  }

  const idp: TestIdp = {
    issuer,
    caFile: certs.root,
    leafPem: readFileSync(certs.leaf, 'utf8'),
    misbehave: 'none',
    jwksFetches: 0,
    signOuts: 0,
    users: structuredClone(USERS),
    refreshTokens: false,
    refreshes: 0,
    unavailable: false,
    configureClient({ redirectUris, postLogoutRedirectUris }) {
      const provider = new Provider(issuer, {
        clients: [{
          client_id: IDP_CLIENT_ID,
          client_secret: IDP_CLIENT_SECRET,
          redirect_uris: redirectUris,
          post_logout_redirect_uris: postLogoutRedirectUris,
          response_types: ['code'],
          grant_types: ['authorization_code', 'refresh_token'],
          token_endpoint_auth_method: 'client_secret_post',
        }],
        jwks: { keys: [signing] },
        findAccount: (_ctx: unknown, id: string) => idp.users[id] && { accountId: id, claims: () => ({ sub: id, ...idp.users[id] }) },
        // Refresh tokens only when a test asks (not tied to offline_access and prompt=consent), rotated at each use.
        issueRefreshToken: async () => idp.refreshTokens,
        rotateRefreshToken: true,
        expiresWithSession: async () => false,
        claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'], groups: ['groups'] },
        scopes: ['openid', 'profile', 'email', 'groups'],
        conformIdTokenClaims: false,
        pkce: { required: () => true },
        cookies: { keys: [randomBytes(16).toString('hex')] },
        features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource } },
        // Consent is given for the test client without a page (a first-party application).
        async loadExistingGrant(ctx: { oidc: { client: { clientId: string }; session: { accountId: string; grantIdFor(id: string): string | undefined }; result?: { consent?: { grantId?: string } }; provider: Provider } }) {
          const { provider: op, client, session } = ctx.oidc;
          const grantId = ctx.oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
          if (grantId) return op.Grant.find(grantId);
          const grant = new op.Grant({ clientId: client.clientId, accountId: session.accountId });
          grant.addOIDCScope('openid profile email groups');
          await grant.save();
          return grant;
        },
      });
      provider.on('end_session.success', () => { idp.signOuts++; });
      provider.use(async (ctx, next) => {
        if (ctx.path === '/jwks') idp.jwksFetches++;
        if (ctx.path === '/token' && idp.unavailable) {
          ctx.status = 503;
          ctx.body = 'down for maintenance';
          return;
        }
        await next();
        if (ctx.path === '/token' && (ctx as { oidc?: { params?: { grant_type?: unknown } } }).oidc?.params?.grant_type === 'refresh_token') idp.refreshes++;
        const mode = idp.misbehave;
        const body = ctx.body as { id_token?: string } | undefined;
        if (ctx.path === '/token' && ctx.status === 200 && mode !== 'none' && typeof body?.id_token === 'string') {
          ctx.body = { ...body, id_token: await tamper(body.id_token, mode) };
        }
      });
      handler = provider.callback();
    },
    request: (url, options) => request(url, { ca: rootPem, ...options }),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return idp;
}

/** The provider's "sign out?" page: one form, submitted by a button named logout. */
function logoutSource(ctx: { body: unknown }, form: string): void {
  ctx.body = `<!DOCTYPE html><html><head><title>Sign out of the test provider</title></head><body>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button></body></html>`;
}

function postLogoutSuccessSource(ctx: { body: unknown }): void {
  ctx.body = '<!DOCTYPE html><html><body>Signed out of the test provider.</body></html>';
}

/** Cookies per host, sent back on every request to it: enough for the provider's sign-in pages. */
class CookieJar {
  private readonly cookies = new Map<string, string>();

  header(): string | undefined {
    return this.cookies.size ? [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ') : undefined;
  }

  take(res: TestResponse): void {
    for (const line of res.headers['set-cookie'] ?? []) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      const name = pair!.slice(0, at).trim();
      const value = pair!.slice(at + 1).trim();
      if (/max-age=0\b/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
}

/**
 * Signs in at the provider as a browser would, from its authorization URL to the redirect back to
 * the gateway (the location returned, with code and state). The dev sign-in page takes any password.
 */
export async function signInAtIdp(idp: TestIdp, authorizationUrl: string, user: string, jar = new CookieJar()): Promise<string> {
  let url = authorizationUrl;
  for (let step = 0; step < 10; step++) {
    const res = await idp.request(url, { headers: { cookie: jar.header() ?? '' } });
    jar.take(res);
    if (res.status === 200 && res.text.includes('name="login"')) {
      const action = /action="([^"]+)"/.exec(res.text)![1]!;
      const posted = await idp.request(new URL(action, url).href, {
        method: 'POST',
        headers: { cookie: jar.header() ?? '', 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ prompt: 'login', login: user, password: 'any' }).toString(),
      });
      jar.take(posted);
      url = new URL(posted.headers.location!, url).href;
      continue;
    }
    const location = res.headers.location;
    if (res.status < 300 || res.status >= 400 || !location) throw new Error(`the provider answered ${res.status}: ${res.text.slice(0, 500)}`);
    const next = new URL(location, url);
    if (next.origin !== idp.issuer) return next.href;
    url = next.href;
  }
  throw new Error('too many redirects at the provider');
}
