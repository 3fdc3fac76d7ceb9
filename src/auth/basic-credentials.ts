/** Longest Authorization header accepted; real Basic credentials are far shorter. */
const MAX_AUTHORIZATION_LENGTH = 8192;

type ParsedAuthorization =
  | { scheme: 'none' }
  | { scheme: 'basic'; user: string; password: string }
  | { scheme: 'bearer'; token: string }
  | { scheme: 'invalid'; reason: string };

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads an Authorization header without ever throwing: malformed input gets a reason. */
export function parseAuthorization(header: string | undefined): ParsedAuthorization {
  if (header === undefined || header === '') return { scheme: 'none' };
  if (header.length > MAX_AUTHORIZATION_LENGTH) return { scheme: 'invalid', reason: `the Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} bytes` };
  const space = header.indexOf(' ');
  const scheme = (space === -1 ? header : header.slice(0, space)).toLowerCase();
  const value = space === -1 ? '' : header.slice(space + 1).trim();
  if (scheme === 'bearer') {
    if (!value) return { scheme: 'invalid', reason: 'the Bearer token is empty' };
    return { scheme: 'bearer', token: value };
  }
  if (scheme !== 'basic') return { scheme: 'invalid', reason: `unsupported authorization scheme "${scheme.slice(0, 20)}"; use Basic or Bearer` };
  if (!value) return { scheme: 'invalid', reason: 'the Basic credentials are empty' };
  if (value.length % 4 !== 0 || !BASE64.test(value)) return { scheme: 'invalid', reason: 'the Basic credentials are not valid base64' };
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(value, 'base64'));
  } catch {
    return { scheme: 'invalid', reason: 'the Basic credentials are not valid UTF-8' };
  }
  const colon = decoded.indexOf(':');
  if (colon === -1) return { scheme: 'invalid', reason: 'the Basic credentials have no ":" between user and password' };
  const user = decoded.slice(0, colon);
  if (!user) return { scheme: 'invalid', reason: 'the Basic credentials have an empty user name' };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(user)) return { scheme: 'invalid', reason: 'the user name contains control characters' };
  return { scheme: 'basic', user, password: decoded.slice(colon + 1) };
}
