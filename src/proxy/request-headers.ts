import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 7.6.1) that must not travel past this hop. */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authorization', 'proxy-authenticate', 'expect']);

/**
 * Headers that frame the body. A client may name them in Connection, but removing them would
 * leave the upstream to find the end of the body on its own: a chunked DELETE without its
 * Transfer-Encoding reaches the upstream as a bodyless request followed by whatever the body holds.
 */
const FRAMING: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding']);

/** Headers describing the client that only a trusted proxy in front of the gateway may supply. */
const FORWARDED_BY_PROXY = ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix'];

/** Headers the gateway sets itself, whose underscore spellings an upstream could confuse with them. */
const SET_BY_GATEWAY = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'];

export interface ForwardedFor {
  /** The address of the direct peer: the client, or the trusted proxy in front of the gateway. */
  peerIp: string;
  proto: 'http' | 'https';
  /** The Host the client asked for, before it is rewritten to the upstream's. */
  host: string | undefined;
  /** Keep an X-Forwarded-For chain only when the peer is a trusted proxy. */
  peerTrusted: boolean;
}

export interface IdentityHeaders {
  /** Lower-cased names removed from every request, the user header among them. */
  strip: readonly string[];
  userHeader: string;
  forwardAuthorization: boolean;
}

/**
 * Rewrites a request's headers in place into what the upstream should see. Runs before http-proxy
 * copies them, so the request forwarded is exactly the one that was authenticated. The passes run in
 * this order because each later one sets headers an earlier one would otherwise remove.
 */
export function prepareUpstreamHeaders(headers: IncomingHttpHeaders, requestId: string, user: string, forwarded: ForwardedFor, identity: IdentityHeaders, keepUpgrade: boolean): void {
  stripHopByHop(headers, keepUpgrade);
  stripIdentity(headers, identity);
  setForwarded(headers, forwarded);
  headers['x-request-id'] = requestId;
  headers[identity.userHeader] = headerSafeUser(user);
}

/** Removes hop-by-hop headers and those the client named in Connection, never the body's framing. */
export function stripHopByHop(headers: IncomingHttpHeaders, keepUpgrade: boolean): void {
  const connection = headers.connection;
  if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close') {
    for (const token of connection.toLowerCase().split(',')) {
      const name = token.trim();
      if (name && name !== 'upgrade' && !FRAMING.has(name)) delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) delete headers[name];
  if (keepUpgrade) headers.connection = 'upgrade';
  else delete headers.upgrade;
}

/**
 * Removes every header a client could use to pose as someone else upstream. WSGI servers map
 * "X_Forwarded_User" and "X-Forwarded-User" to the same variable, so underscore spellings go too.
 */
export function stripIdentity(headers: IncomingHttpHeaders, identity: IdentityHeaders): void {
  for (const name of identity.strip) delete headers[name];
  if (!identity.forwardAuthorization) delete headers.authorization;
  for (const name in headers) {
    if (!name.includes('_')) continue;
    const dashed = name.replaceAll('_', '-');
    if (identity.strip.includes(dashed) || SET_BY_GATEWAY.includes(dashed) || FORWARDED_BY_PROXY.includes(dashed) || dashed === 'authorization') delete headers[name];
  }
}

/** X-Forwarded-For/-Proto/-Host: the client's own values only when the peer is a trusted proxy. */
export function setForwarded(headers: IncomingHttpHeaders, forwarded: ForwardedFor): void {
  const { peerTrusted } = forwarded;
  const chain = peerTrusted ? headers['x-forwarded-for'] : undefined;
  headers['x-forwarded-for'] = chain ? `${chain}, ${forwarded.peerIp}` : forwarded.peerIp;
  if (!peerTrusted || !headers['x-forwarded-proto']) headers['x-forwarded-proto'] = forwarded.proto;
  if (!peerTrusted || !headers['x-forwarded-host']) {
    if (forwarded.host) headers['x-forwarded-host'] = forwarded.host;
    else delete headers['x-forwarded-host'];
  }
  if (!peerTrusted) for (const name of FORWARDED_BY_PROXY) delete headers[name];
}

/** Header values are Latin-1 on the wire; other user names travel percent-encoded. */
export function headerSafeUser(user: string): string {
  return /^[\x20-\x7e]*$/.test(user) ? user : encodeURIComponent(user);
}
