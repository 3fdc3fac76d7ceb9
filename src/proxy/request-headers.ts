import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 7.6.1) that must not travel past this hop. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authorization', 'proxy-authenticate', 'expect'];

export interface ForwardedFor {
  clientIp: string;
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
 * copies them, so the request forwarded is exactly the one that was authenticated.
 */
export function prepareUpstreamHeaders(headers: IncomingHttpHeaders, requestId: string, user: string, forwarded: ForwardedFor, identity: IdentityHeaders, keepUpgrade: boolean): void {
  const connection = headers.connection;
  if (typeof connection === 'string') {
    for (const token of connection.toLowerCase().split(',')) {
      const name = token.trim();
      if (name && name !== 'upgrade' && !HOP_BY_HOP.includes(name)) delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) delete headers[name];
  if (keepUpgrade) headers.connection = 'upgrade';
  else delete headers.upgrade;

  for (const name of identity.strip) delete headers[name];
  if (!identity.forwardAuthorization) delete headers.authorization;

  const chain = forwarded.peerTrusted && typeof headers['x-forwarded-for'] === 'string' ? `${headers['x-forwarded-for']}, ` : '';
  headers['x-forwarded-for'] = chain + forwarded.clientIp;
  if (!forwarded.peerTrusted || !headers['x-forwarded-proto']) headers['x-forwarded-proto'] = forwarded.proto;
  if (!forwarded.peerTrusted || !headers['x-forwarded-host']) {
    if (forwarded.host) headers['x-forwarded-host'] = forwarded.host;
    else delete headers['x-forwarded-host'];
  }
  headers['x-request-id'] = requestId;
  headers[identity.userHeader] = headerSafeUser(user);
}

/** Header values are Latin-1 on the wire; other user names travel percent-encoded. */
export function headerSafeUser(user: string): string {
  return /^[\x20-\x7e]*$/.test(user) ? user : encodeURIComponent(user);
}
