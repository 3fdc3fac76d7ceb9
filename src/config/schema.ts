import { isIP } from 'node:net';
import { z } from 'zod';

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
export const size = z.union([z.number().int().nonnegative(), z.string()], { error: SIZE_RULE }).transform((value, ctx) => {
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

/** What a certificate's subjectAltName can hold: a DNS name (a leading "*." allowed) or an IP address ([::1] too). */
export const certificateName = z.string().refine(
  (value) => isIP(value.replace(/^\[(.*)\]$/, '$1')) !== 0 || /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(value),
  'must be a DNS name (e.g. mlflow.example.com) or an IP address',
);

const count = z.union([z.literal('auto'), z.number().int().min(1).max(256)], { error: 'must be "auto" or a whole number from 1 to 256' });

/** Headers a client could use to pose as someone else upstream; always removed from requests. */
export const IDENTITY_HEADERS = [
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-groups', 'x-forwarded-preferred-username',
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups', 'x-remote-user', 'remote-user',
  'x-mlgate-user', 'x-mlgate-auth',
];

export const configSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  port: port.default(8888),
  upstream: upstreamUrl.default('http://127.0.0.1:5000'),
  shutdownGrace: duration.prefault('30s'),
  watchInterval: duration.prefault('1s'),
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
  }).superRefine(certificateNeedsKey, { when: () => true }).prefault({}),
  auth: z.strictObject({
    realm: z.string().min(1).regex(/^[^"\\\r\n]*$/, 'must not contain quotes, backslashes or newlines').default('MLflow'),
    htpasswd: z.string().min(1).default('config/htpasswd'),
    bcryptCost: z.number().int().min(4).max(17).default(12),
    allowInsecureHashes: z.boolean().default(false),
    cacheSize: z.number().int().min(0).default(10_000),
    cacheTtl: duration.prefault('10m'),
    hashWorkers: count.default('auto'),
    forwardAuthorization: z.boolean().default(false),
  }).prefault({}),
  proxy: z.strictObject({
    userHeader: headerName.default('X-Forwarded-User'),
    stripHeaders: z.array(headerName).default([]),
    trustedProxies: z.array(cidr).default([]),
    timeout: duration.prefault('300s'),
    maxBodySize: size.prefault(0),
    keepAliveSockets: z.number().int().min(1).default(128),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    format: z.enum(['auto', 'json', 'pretty']).default('auto'),
  }).prefault({}),
});

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

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
