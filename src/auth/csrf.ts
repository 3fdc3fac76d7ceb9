import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TrustedProxies } from '../context/client-ip.ts';

/** Methods that never change anything, so a cross-site request with the cookie can do no harm. */
export function isSafeMethod(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

export interface ExternalOrigin {
  /** e.g. https://mlflow.example.com:8888, as the browser names this gateway in Origin. */
  origin: string | undefined;
  /** Whether the browser reached the gateway over HTTPS (directly, or through a trusted TLS terminator). */
  secure: boolean;
}

/**
 * The origin the browser used to reach the gateway: the scheme the gateway serves (or, behind a
 * trusted proxy, the X-Forwarded-Proto it names) and the Host header (or X-Forwarded-Host).
 */
export function externalOrigin(req: IncomingMessage, tls: boolean, proxies: TrustedProxies): ExternalOrigin {
  let proto = tls ? 'https' : 'http';
  let host = req.headers.host;
  if (proxies.peerIsTrusted(req)) {
    const forwardedProto = firstValue(req.headers['x-forwarded-proto']);
    if (forwardedProto === 'https' || forwardedProto === 'http') proto = forwardedProto;
    host = firstValue(req.headers['x-forwarded-host']) ?? host;
  }
  return { origin: host ? originOf(`${proto}://${host}`) : undefined, secure: proto === 'https' };
}

function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  const first = value?.split(',')[0]?.trim().toLowerCase();
  return first || undefined;
}

/** The normalised origin of a URL (default ports dropped, host lower-cased), or undefined. */
function originOf(url: string): string | undefined {
  try {
    const origin = new URL(url).origin;
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

const NONE: ReadonlySet<string> = new Set();

type OriginVerdict = { sameOrigin: true } | { sameOrigin: false; reason: string };

/**
 * Why a request that could change something comes from a page of another site, or undefined: its
 * Origin names neither this gateway nor a trusted origin (a sandboxed page sends "null"), or, without
 * an Origin, the browser says Sec-Fetch-Site: cross-site or same-site. A request with neither header
 * (the MLflow client, curl) is not a browser's and passes.
 */
export function crossSiteReason(req: IncomingMessage, expected: string | undefined, trusted: ReadonlySet<string>): string | undefined {
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const named = originOf(origin);
    if (named !== undefined && (named === expected || trusted.has(named))) return undefined;
    return `Origin ${origin.slice(0, 100)} is neither ${expected ?? 'this site'} nor a trusted origin (auth.trustedOrigins)`;
  }
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return `Sec-Fetch-Site: ${site} without an Origin`;
  return undefined;
}

/**
 * Whether a state-changing request comes from a page of this gateway: its Origin header, or its
 * Referer when a browser sent no Origin, must name the gateway's own origin. Neither is refused too:
 * every current browser sends Origin on a POST, so only a non-browser client omits both.
 */
export function checkSameOrigin(req: IncomingMessage, expected: string | undefined, trusted: ReadonlySet<string> = NONE): OriginVerdict {
  const origin = req.headers.origin;
  const referer = req.headers.referer;
  if (expected === undefined) return { sameOrigin: false, reason: 'the request has no Host header' };
  if (origin !== undefined) {
    const named = originOf(origin);
    return named === expected || (named !== undefined && trusted.has(named)) ? { sameOrigin: true } : { sameOrigin: false, reason: `Origin ${origin.slice(0, 100)} is not ${expected}` };
  }
  if (referer !== undefined) {
    return originOf(referer) === expected ? { sameOrigin: true } : { sameOrigin: false, reason: `Referer from ${originOf(referer) ?? 'an unknown origin'} is not ${expected}` };
  }
  return { sameOrigin: false, reason: 'neither Origin nor Referer names this site' };
}

/**
 * The token of a form that acts on one session (sign-out): a keyed hash of the session id, so a page
 * on another site cannot know it and a form from an earlier session does not work on a later one.
 */
export function formToken(key: Uint8Array, purpose: string, sessionId: string): string {
  return createHmac('sha256', key).update(purpose).update('\0').update(sessionId).digest('base64url');
}

export function verifyFormToken(key: Uint8Array, purpose: string, sessionId: string, token: unknown): boolean {
  if (typeof token !== 'string') return false;
  const expected = Buffer.from(formToken(key, purpose, sessionId));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
