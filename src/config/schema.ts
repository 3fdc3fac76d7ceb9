import { isIP } from 'node:net';
import { z } from 'zod';
import { secret } from './schema-paths.ts';

// Durations: "250ms", "30s", "5m", "12h", "7d", or a bare number of seconds (as nginx reads them).
const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RULE = 'must be a duration such as 500ms, 30s, 5m, 12h or 7d (a bare number is seconds)';
export const duration = z.union([z.number().nonnegative(), z.string()], { error: DURATION_RULE }).transform((value, ctx) => {
  if (typeof value === 'number') return Math.round(value * 1000);
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!match) {
    ctx.addIssue({ code: 'custom', message: DURATION_RULE, input: value });
    return z.NEVER;
  }
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2] ?? 's']!);
});

/** Milliseconds back in the largest unit that is exact, so printed configuration reads like written. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = DURATION_UNITS_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? '0s' : `${ms}ms`;
}

// Sizes: "512KB", "10MB", "5GiB", or a bare number of bytes; 0 means unlimited.
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30,
};
const SIZE_RULE = 'must be a size such as 512KB, 100MB or 5GiB (a bare number is bytes)';
const size = z.union([z.number().int().nonnegative(), z.string()], { error: SIZE_RULE }).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: SIZE_RULE, input: value });
    return z.NEVER;
  }
  return Math.round(Number(match[1]) * unit);
});

const port = z.number().int().min(0).max(65535);
/** A browser origin as it appears in the Origin header: scheme, host and port, nothing else. */
const webOrigin = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === value.replace(/\/$/, '').toLowerCase();
  } catch {
    return false;
  }
}, 'must be an origin such as https://notebooks.example.com:8443 (scheme, host and port; no path)').transform((value) => new URL(value).origin);
const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be an HTTP header name');

const cidr = z.string().refine((value) => {
  const [address, bits, ...rest] = value.split('/');
  const family = isIP(address ?? '');
  if (!family || rest.length) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR range, e.g. 10.0.0.0/8');

const upstreamUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.search && !url.hash && !url.username;
  } catch {
    return false;
  }
}, 'must be an http:// or https:// URL without query, fragment or credentials');

/**
 * One server or a list of them (docs/operations.md "Several MLflow servers"), always a list once
 * parsed; a list's servers are distinct and share one scheme (one connection pool per upstream).
 */
function upstreamList<T extends z.ZodType<string, string>>(server: T) {
  return z.union([server, z.array(server).min(1, 'must name at least one server')], { error: 'must be a URL or a list of URLs' })
    .transform((value) => (typeof value === 'string' ? [value] : value))
    .superRefine((servers, ctx) => {
      const origins = servers.map((server) => (URL.canParse(server) ? new URL(server).origin : server));
      origins.forEach((origin, index) => {
        const first = origins.indexOf(origin);
        if (first !== index) ctx.addIssue({ code: 'custom', path: [index], message: `repeats [${first}] (${origin}); each server is listed once` });
      });
      const schemes = new Set(servers.filter((server) => URL.canParse(server)).map((server) => new URL(server).protocol));
      if (schemes.size > 1) ctx.addIssue({ code: 'custom', message: 'mixes http:// and https:// servers; the servers of one upstream share a scheme' });
    });
}

/** What a certificate's subjectAltName can hold: a DNS name (a leading "*." allowed) or an IP address ([::1] too). */
export const certificateName = z.string().refine(
  (value) => isIP(value.replace(/^\[(.*)\]$/, '$1')) !== 0 || /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(value),
  'must be a DNS name (e.g. mlflow.example.com) or an IP address',
);

/**
 * A route's path prefix: segments of plain URL characters, no dot segments, escapes or query; a
 * trailing slash is dropped ("/mlflow/" is "/mlflow"), "/" is the catch-all.
 */
const ROUTE_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._~!$&'()*+,;=:@-]+)*\/?$/;
const routePath = z.string().regex(ROUTE_PATH, 'must be a path such as / or /mlflow: segments of letters, digits and -._~ with no "..", "//", "%" or "?"')
  .transform((path) => (path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path));

/** Headers the gateway frames or routes by itself; a route cannot set them for the upstream. */
const GATEWAY_OWNED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'keep-alive', 'te', 'trailer', 'expect']);
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
/** Keys checked one by one, so each bad name is reported at its own line. */
const routeHeaders = z.record(z.string(), z.string()).superRefine((headers, ctx) => {
  for (const name of Object.keys(headers)) {
    if (!HEADER_NAME.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: 'must be an HTTP header name' });
    else if (GATEWAY_OWNED_HEADERS.has(name.toLowerCase())) ctx.addIssue({ code: 'custom', path: [name], message: 'is framed by the gateway itself and cannot be set per route' });
  }
});

/** Who may use a route: user names, "@group" names, or "*" for every signed-in user. */
const allowEntry = z.string().regex(/^(\*|@?[^\s@][^\s]*)$/, 'must be a user name, @group, or * (everyone signed in)');

const route = z.strictObject({
  path: routePath,
  upstream: upstreamList(upstreamUrl.refine((value) => URL.canParse(value) && new URL(value).pathname === '/', 'must be an origin such as http://127.0.0.1:8889 (the request path is forwarded as is, after stripPrefix)')).optional(),
  /** The path proxy.healthCheck asks this route's servers for (their own, e.g. Jupyter's /api), or false: never checked, never taken out. */
  healthCheckPath: z.union([z.string().regex(/^\/[^\s?#]*$/, 'must be a path such as /health'), z.literal(false)], { error: 'must be a path such as /api, or false' }).optional(),
  stripPrefix: z.boolean().default(false),
  mlflow: z.boolean().default(false),
  allow: z.array(allowEntry).optional(),
  /** Client addresses that may use the route, within access.allowCidrs (both must allow); absent or empty: no narrowing. */
  allowCidrs: z.array(cidr).optional(),
  upstreamHeaders: routeHeaders.default({}),
});
export type RouteConfig = z.output<typeof route>;

const count = z.union([z.literal('auto'), z.number().int().min(1).max(256)], { error: 'must be "auto" or a whole number from 1 to 256' });

/** JWS algorithms a JWT may be signed with (never "none"). */
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export const PUBLIC_KEY_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type JwtAlgorithm = (typeof HMAC_ALGORITHMS)[number] | (typeof PUBLIC_KEY_ALGORITHMS)[number];

/** A JWKS URL must be https, or http to this machine only: keys must not be swappable on the way. */
const jwtPublicKey = z.string().min(1).refine((value) => {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return true; // a PEM file or PEM text
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || (url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname));
  } catch {
    return false;
  }
}, 'must be a PEM file, PEM text, or the https:// URL of a JWKS (http:// only for localhost)');

/** An identity provider's address: https, or http to this machine only (its keys and tokens travel on it). */
const oidcIssuer = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return !url.search && !url.hash && !url.username && (url.protocol === 'https:' || (url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)));
  } catch {
    return false;
  }
}, 'must be the issuer URL the provider publishes (https://, http:// only for localhost), e.g. https://idp.example.com/realms/ml');

/** The redirect URI registered at the providers: this gateway's /-/oidc/callback, exactly. */
const oidcRedirectUrl = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.pathname === '/-/oidc/callback' && !url.search && !url.hash && !url.username;
  } catch {
    return false;
  }
}, "must be this gateway's sign-in callback as browsers reach it, e.g. https://mlflow.example.com:8888/-/oidc/callback");

/** Longest a provider's clock may be off: beyond this an expired ID token would pass. */
const MAX_OIDC_CLOCK_TOLERANCE_MS = 5 * 60_000;

/**
 * One OpenID Connect provider: sign-in by authorization code with PKCE, state and nonce, and (with
 * `bearer`) its JWTs as Bearer tokens with the same claims. Its users' names are `namePrefix` + the
 * `userClaim`; see docs/oidc.md for how they are kept apart from htpasswd users and other providers.
 */
const oidcProvider = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'must be a short name of lower-case letters, digits, - and _ (it appears in URLs and logs), e.g. okta'),
  label: z.string().min(1).max(60).optional(),
  issuer: oidcIssuer,
  clientId: z.string().min(1),
  clientSecretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the name of an environment variable that holds the client secret').optional(),
  scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be one scope (no spaces or quotes)')).default(['openid', 'profile', 'email']).refine((scopes) => scopes.includes('openid'), 'must include openid'),
  userClaim: z.string().min(1).default('preferred_username'),
  groupsClaim: z.string().min(1).default('groups'),
  allowedDomains: z.array(z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, 'must be an e-mail domain such as example.com').transform((domain) => domain.toLowerCase())).default([]),
  requiredGroups: z.array(z.string().min(1)).default([]),
  ca: z.string().min(1).optional(),
  namePrefix: z.string().regex(/^([A-Za-z0-9_.-]+:)?$/, 'must be empty, or letters, digits, ._- ending in ":" (e.g. "okta:"), so prefixed names can never be htpasswd names').default(''),
  sameUsersAsHtpasswd: z.boolean().default(false),
  bearer: z.boolean().default(false),
  bearerAudience: z.array(z.string().min(1)).default([]),
  clockTolerance: duration.prefault('30s'),
  timeout: duration.prefault('10s'),
  /** How often each user's groups are read again with their refresh token (when the provider gave one). */
  refreshInterval: duration.prefault('15m'),
}).superRefine((provider, ctx) => {
  if (provider.clockTolerance > MAX_OIDC_CLOCK_TOLERANCE_MS) ctx.addIssue({ code: 'custom', path: ['clockTolerance'], message: 'must be at most 5m' });
  if (provider.refreshInterval < 1000) ctx.addIssue({ code: 'custom', path: ['refreshInterval'], message: 'must be at least 1s' });
});
export type OidcProviderConfig = z.output<typeof oidcProvider>;

/** Names and prefixes tell providers apart: no user name can come from two of them. */
function oidcProvidersDistinct(providers: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(providers)) return;
  const names = new Map<string, number>();
  const prefixes = new Map<string, number>();
  const issuers = new Map<string, number>();
  providers.forEach((provider: { name?: unknown; namePrefix?: unknown; issuer?: unknown }, index) => {
    if (typeof provider !== 'object' || provider === null) return;
    const check = (seen: Map<string, number>, key: 'name' | 'namePrefix' | 'issuer', value: unknown, rule: string) => {
      if (typeof value !== 'string') return;
      const first = seen.get(value);
      if (first === undefined) seen.set(value, index);
      else ctx.addIssue({ code: 'custom', path: [index, key], message: `repeats oidc.providers[${first}].${key}; ${rule}` });
    };
    check(names, 'name', provider.name, 'each provider needs its own name');
    check(prefixes, 'namePrefix', provider.namePrefix ?? '', 'give each provider its own namePrefix (at most one may have none), so no user name can come from two providers');
    check(issuers, 'issuer', typeof provider.issuer === 'string' ? provider.issuer.replace(/\/$/, '') : undefined, 'configure each issuer once');
  });
}

/**
 * Provider sign-in ends in a session; an issuer is configured once (as a provider with `bearer: true`,
 * not also under jwt.*); turning the password form off leaves a provider to sign in with.
 */
function oidcFitsSignIn(config: { oidc?: unknown; session?: unknown; auth?: unknown; jwt?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof config !== 'object' || config === null) return;
  const providers = (typeof config.oidc === 'object' && config.oidc !== null ? (config.oidc as { providers?: unknown }).providers : undefined) ?? [];
  const list = Array.isArray(providers) ? (providers as { issuer?: unknown }[]) : [];
  const sessionOn = !(typeof config.session === 'object' && config.session !== null && (config.session as { enabled?: unknown }).enabled === false);
  if (list.length && !sessionOn) ctx.addIssue({ code: 'custom', path: ['oidc', 'providers'], message: 'needs session.enabled: true (signing in with a provider ends in a browser session)' });
  if (typeof config.auth === 'object' && config.auth !== null && (config.auth as { passwordSignIn?: unknown }).passwordSignIn === false && list.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['auth', 'passwordSignIn'], message: 'is false but no oidc.providers are configured: nobody could sign in with a browser' });
  }
  const jwtIssuer = typeof config.jwt === 'object' && config.jwt !== null ? (config.jwt as { issuer?: unknown }).issuer : undefined;
  if (typeof jwtIssuer !== 'string') return;
  const index = list.findIndex((provider) => typeof provider?.issuer === 'string' && provider.issuer.replace(/\/$/, '') === jwtIssuer.replace(/\/$/, ''));
  if (index !== -1) ctx.addIssue({ code: 'custom', path: ['jwt', 'issuer'], message: `is oidc.providers[${index}].issuer too; configure the issuer once: remove jwt.* and set bearer: true on that provider` });
}

/** Headers a client could use to pose as someone else upstream; always removed from requests. */
export const IDENTITY_HEADERS = [
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-groups', 'x-forwarded-preferred-username',
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups', 'x-remote-user', 'remote-user',
  'x-mlgate-user', 'x-mlgate-auth',
];

export const configSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  port: port.default(8888),
  upstream: upstreamList(upstreamUrl).default(['http://127.0.0.1:5000']),
  routes: z.array(route).default([]).superRefine(routePathsUnique, { when: () => true }),
  /** Client addresses (IPs, CIDR ranges) that may use the gateway at all, checked before authentication; empty: every address. */
  access: z.strictObject({
    allowCidrs: z.array(cidr).default([]),
  }).prefault({}),
  shutdownGrace: duration.prefault('30s'),
  watchInterval: duration.prefault('1s'),
  workers: count.default('auto'),
  tls: z.strictObject({
    enabled: z.boolean().default(true),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    selfSignedDir: z.string().min(1).default('certs'),
    hosts: z.array(certificateName).default([]),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    hsts: z.union([z.literal(false), z.string().min(1)], { error: 'must be a Strict-Transport-Security header value, or false to send none' })
      .default('max-age=31536000'),
    redirectHttpPort: port.optional(),
    // Mutual TLS (docs/client-certificates.md): off while `ca` is unset.
    clientCertificates: z.strictObject({
      ca: z.string().min(1).optional(),
      mode: z.enum(['optional', 'required']).default('optional'),
      user: z.enum(['cn', 'email', 'uri']).default('cn'),
      groups: z.enum(['none', 'ou']).default('none'),
      crl: z.string().min(1).optional(),
    }).prefault({}),
  }).superRefine(certificateNeedsKey, { when: () => true }).superRefine(clientCertificatesFitTls, { when: () => true }).prefault({}),
  acme: z.strictObject({
    domains: z.array(certificateName.refine((name) => isIP(name.replace(/^\[(.*)\]$/, '$1')) === 0 && !name.startsWith('*.'), 'must be a DNS name without a wildcard (neither HTTP-01 nor TLS-ALPN-01 can prove a wildcard or an IP address)')).default([]),
    email: z.string().regex(/^[^\s@]+@[^\s@]+$/, 'must be an e-mail address').optional(),
    challenge: z.enum(['auto', 'http-01', 'tls-alpn-01']).default('auto'),
    directory: z.string().refine((value) => URL.canParse(value) && new URL(value).protocol === 'https:', 'must be the https:// URL of an ACME directory').default('https://acme-v02.api.letsencrypt.org/directory'),
    directoryCa: z.string().min(1).optional(),
    renewBefore: duration.optional(),
    checkInterval: duration.prefault('12h'),
  }).superRefine(acmeIntervalsFit, { when: () => true }).prefault({}),
  auth: z.strictObject({
    realm: z.string().min(1).regex(/^[^"\\\r\n]*$/, 'must not contain quotes, backslashes or newlines').default('MLflow'),
    htpasswd: z.string().min(1).default('config/htpasswd'),
    bcryptCost: z.number().int().min(4).max(17).default(12),
    allowInsecureHashes: z.boolean().default(false),
    cacheSize: z.number().int().min(0).default(10_000),
    cacheTtl: duration.prefault('10m'),
    hashWorkers: count.default('auto'),
    forwardAuthorization: z.boolean().default(false),
    trustedOrigins: z.array(webOrigin).default([]),
    passwordSignIn: z.boolean().default(true),
  }).prefault({}),
  session: z.strictObject({
    enabled: z.boolean().default(true),
    secret: secret(z.string().min(32)).optional(),
    keyFile: z.string().min(1).default('config/session.key'),
    revocationsFile: z.string().min(1).default('config/session-revocations.json'),
    idleTimeout: duration.prefault('12h'),
    absoluteTimeout: duration.prefault('7d'),
  }).superRefine(sessionTimesAtLeastOneSecond, { when: () => true }).prefault({}),
  proxy: z.strictObject({
    userHeader: headerName.default('X-Forwarded-User'),
    stripHeaders: z.array(headerName).default([]),
    trustedProxies: z.array(cidr).default([]),
    timeout: duration.prefault('300s'),
    maxBodySize: size.prefault(0),
    keepAliveSockets: z.number().int().min(1).default(128),
    /** What forwards HTTP requests (docs/performance.md); WebSocket tunnels always go through http-proxy. */
    forwarder: z.enum(['undici', 'http-proxy']).default('undici'),
    /** Active checks of the servers of every upstream that lists two or more (Caddy's health_uri, health_interval, ...). */
    healthCheck: z.strictObject({
      path: z.string().regex(/^\/[^\s?#]*$/, 'must be a path such as /health').default('/health'),
      interval: duration.prefault('5s'),
      timeout: duration.prefault('2s'),
      fails: z.number().int().min(1).default(2),
      passes: z.number().int().min(1).default(1),
    }).superRefine(healthCheckTimesFit, { when: () => true }).prefault({}),
  }).prefault({}),
  limits: z.strictObject({
    headerTimeout: duration.prefault('20s'),
    bodyIdleTimeout: duration.prefault('30s'),
    unauthenticatedBodyIdleTimeout: duration.prefault('10s'),
    keepAliveTimeout: duration.prefault('65s'),
    maxConnections: z.number().int().min(1).default(10_000),
    maxConnectionsPerIp: z.number().int().min(1).default(2000),
    refusalDrainSize: size.prefault('8MiB'),
    refusalDrainTime: duration.prefault('5s'),
    checkedBodyBudget: size.prefault('256MiB'),
  }).superRefine(limitsFit, { when: () => true }).prefault({}),
  tokens: z.strictObject({
    enabled: z.boolean().default(true),
    file: z.string().min(1).default('config/tokens.json'),
    /** Signed-in users make, list and revoke their own tokens at /-/tokens and /-/api/tokens. */
    selfService: z.boolean().default(true),
    /** Unexpired tokens one user may hold from /-/tokens (made with `mlgate token issue` count too). */
    maxPerUser: z.number().int().min(1).max(1000).default(50),
    /** The longest (and default) life of a token an identity provider's user makes: mlgate cannot learn that the provider dropped them. */
    externalMaxTtl: duration.prefault('30d'),
  }).superRefine(tokenTtlAtLeastOneMinute, { when: () => true }).prefault({}),
  jwt: z.strictObject({
    secret: secret(z.string().min(32)).optional(),
    publicKey: jwtPublicKey.optional(),
    issuer: z.string().min(1).optional(),
    audience: z.array(z.string().min(1)).default([]),
    algorithms: z.array(z.enum([...HMAC_ALGORITHMS, ...PUBLIC_KEY_ALGORITHMS])).default([]),
    clockTolerance: duration.prefault('30s'),
    userClaim: z.string().min(1).default('sub'),
    groupsClaim: z.string().min(1).default('groups'),
    cacheSize: z.number().int().min(0).default(10_000),
    cacheTtl: duration.prefault('1m'),
    jwksCooldown: duration.prefault('30s'),
    jwksCacheMaxAge: duration.prefault('10m'),
    jwksTimeout: duration.prefault('5s'),
  }).superRefine(jwtKeysFitAlgorithms, { when: () => true }).prefault({}),
  oidc: z.strictObject({
    redirectUrl: oidcRedirectUrl.optional(),
    /** Providers' refresh tokens (encrypted with a key derived from the session key), one per user and provider. */
    refreshTokensFile: z.string().min(1).default('config/oidc-refresh-tokens.json'),
    providers: z.array(oidcProvider).default([]).superRefine(oidcProvidersDistinct, { when: () => true }),
  }).prefault({}),
  lockout: z.strictObject({
    enabled: z.boolean().default(true),
    window: duration.prefault('15m'),
    maxUserFailures: z.number().int().min(1).default(10),
    maxIpFailures: z.number().int().min(1).default(30),
    backoff: duration.prefault('30s'),
    backoffMax: duration.prefault('15m'),
    knownIpTtl: duration.prefault('7d'),
    maxEntries: z.number().int().min(100).default(10_000),
  }).superRefine(lockoutDurationsFit, { when: () => true }).prefault({}),
  /**
   * State shared by several gateways (docs/operations.md "Several gateways: shared state in Redis"):
   * lockouts and session sign-outs. Absent: each gateway keeps its own, as on a single host.
   */
  state: z.strictObject({
    redis: z.strictObject({
      url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// (TLS) URL, e.g. redis://10.0.0.5:6379/0')
        .refine((url) => !/^rediss?:\/\/[^/@]*:[^/@]*@/.test(url), 'must not hold a password (`config check` prints it): use state.redis.password or MLGATE_STATE_REDIS_PASSWORD'),
      /** The AUTH password (also MLGATE_STATE_REDIS_PASSWORD); a password in the URL works too. */
      password: secret(z.string().min(1)).optional(),
      keyPrefix: z.string().min(1).max(64).default('mlgate:'),
      /** How long one command may take before Redis counts as unreachable. */
      timeout: duration.prefault('1s'),
    }).optional(),
  }).prefault({}),
  authz: z.strictObject({
    policyFile: z.string().min(1).default('config/policy.yaml'),
    allowUnknownRoutes: z.boolean().default(false),
    cacheTtl: duration.prefault('5s'),
    maxCheckedBody: size.prefault('16MiB'),
    maxDecompressedBody: size.prefault('64MiB'),
    maxLookupsPerRequest: z.number().int().min(1).default(100),
  }).superRefine(checkedBodyAtLeastOneKiB, { when: () => true }).prefault({}),
  /** Prometheus metrics at /-/metrics (docs/operations.md "Metrics"): for admins, `token` or `allowCidrs` only. */
  metrics: z.strictObject({
    enabled: z.boolean().default(true),
    /** A bearer token Prometheus sends (its `authorization` setting). */
    token: secret(z.string().min(16)).optional(),
    /** Peers (the direct connection, never X-Forwarded-For) that may scrape without credentials. */
    allowCidrs: z.array(cidr).default([]),
    /** Node's process_* and nodejs_* metrics too (CPU, memory, event loop, GC). */
    processMetrics: z.boolean().default(false),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    format: z.enum(['auto', 'json', 'pretty']).default('auto'),
  }).prefault({}),
  /** Security events as JSON lines, apart from the operational log (docs/operations.md, "Audit log"). */
  audit: z.strictObject({
    enabled: z.boolean().default(false),
    /** A file (appended to, re-opened on SIGHUP), or "-" / "stdout". */
    file: z.string().min(1).default('logs/audit.log'),
    /** Rotate at this size (<file>.1); 0: only re-open on SIGHUP (logrotate). */
    maxSize: size.prefault(0),
    summaryInterval: duration.prefault('60s'),
  }).superRefine(auditFits, { when: () => true }).prefault({}),
}).superRefine(mlflowRoutesUseTheUpstream, { when: () => true }).superRefine(acmeFitsTls, { when: () => true }).superRefine(oidcFitsSignIn, { when: () => true });

function routePathsUnique(routes: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(routes)) return;
  const seen = new Map<string, number>();
  routes.forEach((route: { path?: unknown }, index) => {
    if (typeof route?.path !== 'string') return;
    const path = route.path.length > 1 ? route.path.replace(/\/$/, '') : route.path;
    const first = seen.get(path);
    if (first === undefined) seen.set(path, index);
    else ctx.addIssue({ code: 'custom', path: [index, 'path'], message: `repeats routes[${first}].path (${path}); each prefix goes to one upstream` });
  });
}

/**
 * Grants, owners and run lookups are read from one MLflow server, the one named by `upstream`; an
 * MLflow route elsewhere would be checked against the wrong server's experiments.
 */
function mlflowRoutesUseTheUpstream(config: { upstream?: unknown; routes?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof config !== 'object' || config === null || !Array.isArray(config.routes)) return;
  const upstream = originsOf(config.upstream);
  if (!upstream) return;
  const named = upstream.length === 1 ? upstream[0] : `[${upstream.join(', ')}]`;
  config.routes.forEach((route: { mlflow?: unknown; upstream?: unknown; healthCheckPath?: unknown }, index) => {
    if (route?.mlflow === true && route.healthCheckPath !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['routes', index, 'healthCheckPath'], message: 'is not for an mlflow route: MLflow\'s servers are checked at proxy.healthCheck.path' });
    }
    const own = originsOf(route?.upstream);
    if (route?.mlflow !== true || !own) return;
    // The same servers in any order: one MLflow list, one backend store.
    if (own.length === upstream.length && own.every((origin) => upstream.includes(origin))) return;
    ctx.addIssue({ code: 'custom', path: ['routes', index, 'upstream'], message: `must be the top-level upstream (${named}) on an mlflow route: grants and owners are read from that MLflow server; leave it out to use it` });
  });
}

/** The origins of an upstream (one URL or a list), or undefined when it is not (yet) a valid one. */
function originsOf(value: unknown): string[] | undefined {
  const servers = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(servers) || !servers.every((server) => typeof server === 'string' && URL.canParse(server))) return undefined;
  return servers.map((server: string) => new URL(server).origin);
}

/** A check that may take longer than the interval would overlap the next one. */
function healthCheckTimesFit(check: { interval?: unknown; timeout?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof check !== 'object' || check === null) return;
  const { interval, timeout } = check;
  if (typeof interval === 'number' && interval < 100) ctx.addIssue({ code: 'custom', path: ['interval'], message: 'must be at least 100ms' });
  if (typeof timeout === 'number' && timeout < 10) ctx.addIssue({ code: 'custom', path: ['timeout'], message: 'must be at least 10ms' });
  if (typeof interval === 'number' && typeof timeout === 'number' && timeout > interval) ctx.addIssue({ code: 'custom', path: ['timeout'], message: `must not be longer than proxy.healthCheck.interval (${interval} ms)` });
}

/** Session cookies count in whole seconds; a shorter session would end before it began. */
function tokenTtlAtLeastOneMinute(tokens: { externalMaxTtl?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof tokens !== 'object' || tokens === null) return; // not a mapping: reported as such
  const ms = tokens.externalMaxTtl;
  if (typeof ms === 'number' && ms < 60_000) ctx.addIssue({ code: 'custom', path: ['externalMaxTtl'], message: 'must be at least 1m' });
  if (typeof ms === 'number' && ms > 3650 * 86_400_000) ctx.addIssue({ code: 'custom', path: ['externalMaxTtl'], message: 'must be at most 3650d' });
}

function sessionTimesAtLeastOneSecond(session: { idleTimeout?: unknown; absoluteTimeout?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof session !== 'object' || session === null) return; // not a mapping: reported as such
  for (const key of ['idleTimeout', 'absoluteTimeout'] as const) {
    const ms = session[key];
    if (typeof ms === 'number' && ms < 1000) ctx.addIssue({ code: 'custom', path: [key], message: 'must be at least 1s' });
  }
}

/**
 * A certificate without its key (or the reverse) is a half-finished edit, not a request for a
 * self-signed pair; checked even when other keys are wrong so every problem shows at once.
 */
function certificateNeedsKey(tls: { cert?: unknown; key?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof tls !== 'object' || tls === null) return; // not a mapping: reported as such
  const [given, missing] = tls.cert === undefined ? ['key', 'cert'] : ['cert', 'key'];
  if ((tls.cert === undefined) === (tls.key === undefined)) return;
  ctx.addIssue({
    code: 'custom',
    path: [given],
    message: `is set without tls.${missing}; set both (the certificate chain and its private key), or neither for a self-signed pair in tls.selfSignedDir`,
  });
}

/** Client certificates are asked for in the TLS handshake, so they need TLS on; a CRL revokes certificates of the CAs in `ca`. */
function clientCertificatesFitTls(tls: { enabled?: unknown; clientCertificates?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof tls !== 'object' || tls === null || typeof tls.clientCertificates !== 'object' || tls.clientCertificates === null) return;
  const { ca, crl } = tls.clientCertificates as { ca?: unknown; crl?: unknown };
  if (ca === undefined) {
    if (crl !== undefined) ctx.addIssue({ code: 'custom', path: ['clientCertificates', 'crl'], message: 'is set but client certificates are off; set tls.clientCertificates.ca (the CAs that issue them)' });
    return;
  }
  if (tls.enabled === false) ctx.addIssue({ code: 'custom', path: ['clientCertificates', 'ca'], message: 'needs TLS on (tls.enabled: true): client certificates are part of the TLS handshake; behind another TLS terminator, check them there' });
}

/** A check every few milliseconds would hammer the ACME server; a renewal window of 0 would renew only after expiry. */
function acmeIntervalsFit(acme: { checkInterval?: unknown; renewBefore?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof acme !== 'object' || acme === null) return;
  if (typeof acme.checkInterval === 'number' && acme.checkInterval < 1000) ctx.addIssue({ code: 'custom', path: ['checkInterval'], message: 'must be at least 1s' });
  if (acme.renewBefore === 0) ctx.addIssue({ code: 'custom', path: ['renewBefore'], message: 'must be more than 0' });
}

/**
 * ACME replaces whatever certificate would be served, so a configured pair would be silently
 * ignored; HTTP-01 is answered on the plain-HTTP port, TLS-ALPN-01 on the HTTPS one.
 */
function acmeFitsTls(config: { acme?: unknown; tls?: unknown; workers?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof config !== 'object' || config === null || typeof config.acme !== 'object' || config.acme === null) return;
  const domains = (config.acme as { domains?: unknown }).domains;
  if (!Array.isArray(domains) || domains.length === 0) return;
  const tls = (typeof config.tls === 'object' && config.tls !== null ? config.tls : {}) as { enabled?: unknown; cert?: unknown; key?: unknown; redirectHttpPort?: unknown };
  const path = ['acme', 'domains'];
  if (tls.enabled === false) ctx.addIssue({ code: 'custom', path, message: 'needs TLS on (tls.enabled: true): the ACME certificate is what HTTPS serves' });
  else if (tls.cert !== undefined || tls.key !== undefined) ctx.addIssue({ code: 'custom', path, message: 'is set together with tls.cert/tls.key; use one: ACME obtains the certificate itself, tls.cert serves one you manage' });
  // Each worker process would order on its own, and the CA's check would reach whichever
  // worker the port hands it to, which may not be the one that knows the challenge. `auto` (the
  // default) runs one process with ACME (src/server/cluster.ts workerCount).
  else if (typeof config.workers === 'number' && config.workers !== 1) ctx.addIssue({ code: 'custom', path, message: 'needs workers: 1 or auto (one process with ACME); ACME with several worker processes is not supported yet' });
  else if ((config.acme as { challenge?: unknown }).challenge === 'http-01' && tls.redirectHttpPort === undefined) {
    ctx.addIssue({ code: 'custom', path: ['acme', 'challenge'], message: 'http-01 needs tls.redirectHttpPort (80 for a public CA): the challenge is answered on that plain-HTTP port' });
  }
}

/**
 * Every allowed algorithm has a key of its kind: HS* the secret, the others the public key. An HMAC
 * secret never verifies an RS/ES token nor a public key an HS one (the algorithm-confusion attack).
 */
function jwtKeysFitAlgorithms(jwt: Record<string, unknown> | null, ctx: z.RefinementCtx): void {
  if (typeof jwt !== 'object' || jwt === null) return;
  if (jwt.secret === undefined && jwt.publicKey === undefined) {
    for (const key of ['issuer', 'audience', 'algorithms'] as const) {
      const value = jwt[key];
      if (value !== undefined && !(Array.isArray(value) && value.length === 0)) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'is set but JWT verification is off; set jwt.secret or jwt.publicKey' });
      }
    }
    return;
  }
  const algorithms = Array.isArray(jwt.algorithms) ? jwt.algorithms.filter((alg): alg is string => typeof alg === 'string') : [];
  const hmac = new Set<string>(HMAC_ALGORITHMS);
  const needSecret = jwt.secret === undefined ? algorithms.filter((alg) => hmac.has(alg)) : [];
  const needPublicKey = jwt.publicKey === undefined ? algorithms.filter((alg) => !hmac.has(alg)) : [];
  if (needSecret.length) ctx.addIssue({ code: 'custom', path: ['algorithms'], message: `${needSecret.join(', ')} needs jwt.secret (a shared secret); jwt.publicKey verifies RS*, PS*, ES* and EdDSA` });
  if (needPublicKey.length) ctx.addIssue({ code: 'custom', path: ['algorithms'], message: `${needPublicKey.join(', ')} needs jwt.publicKey; jwt.secret verifies HS256, HS384 and HS512` });
}

/** A summary every few milliseconds would be a flood of its own; a file rotated every few lines, churn. */
function auditFits(audit: { summaryInterval?: unknown; maxSize?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof audit !== 'object' || audit === null) return;
  if (typeof audit.summaryInterval === 'number' && audit.summaryInterval < 1000) ctx.addIssue({ code: 'custom', path: ['summaryInterval'], message: 'must be at least 1s' });
  if (typeof audit.maxSize === 'number' && audit.maxSize > 0 && audit.maxSize < 64 * 1024) ctx.addIssue({ code: 'custom', path: ['maxSize'], message: 'must be 0 (no size rotation) or at least 64KiB' });
}

/** A limit under 1 KiB would refuse ordinary MLflow calls (a log-batch of a few metrics). */
function checkedBodyAtLeastOneKiB(authz: { maxCheckedBody?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof authz !== 'object' || authz === null) return;
  if (typeof authz.maxCheckedBody === 'number' && authz.maxCheckedBody < 1024) ctx.addIssue({ code: 'custom', path: ['maxCheckedBody'], message: 'must be at least 1KiB' });
}

/** Timeouts of 0 would turn the protection off silently, or cut every request: at least 100ms. */
function limitsFit(limits: Record<string, unknown> | null, ctx: z.RefinementCtx): void {
  if (typeof limits !== 'object' || limits === null) return;
  for (const key of ['headerTimeout', 'bodyIdleTimeout', 'unauthenticatedBodyIdleTimeout', 'keepAliveTimeout', 'refusalDrainTime'] as const) {
    const ms = limits[key];
    if (typeof ms === 'number' && ms < 100) ctx.addIssue({ code: 'custom', path: [key], message: 'must be at least 100ms' });
  }
  if (typeof limits.checkedBodyBudget === 'number' && limits.checkedBodyBudget < 64 * 1024) ctx.addIssue({ code: 'custom', path: ['checkedBodyBudget'], message: 'must be at least 64KiB' });
}

/** (A refinement on the durations themselves would hide them from `config check`'s formatting.) */
function lockoutDurationsFit(lockout: { window?: unknown; backoff?: unknown; backoffMax?: unknown } | null, ctx: z.RefinementCtx): void {
  if (typeof lockout !== 'object' || lockout === null) return;
  for (const key of ['window', 'backoff'] as const) {
    if (lockout[key] === 0) ctx.addIssue({ code: 'custom', path: [key], message: 'must be more than 0' });
  }
  if (typeof lockout.backoff === 'number' && typeof lockout.backoffMax === 'number' && lockout.backoffMax < lockout.backoff) {
    ctx.addIssue({ code: 'custom', path: ['backoffMax'], message: `must be at least lockout.backoff (${formatDuration(lockout.backoff)})` });
  }
}

export type Config = z.output<typeof configSchema>;
