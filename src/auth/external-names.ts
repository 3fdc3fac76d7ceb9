// The names and groups an identity provider's claims give a user, one way for every path that takes
// them: OpenID Connect sign-in, and the same provider's JWTs sent as Bearer tokens (docs/oidc.md).

/** Longest user name taken from a claim, as for htpasswd users. */
const MAX_USER_LENGTH = 255;

/**
 * A provider's user name: `prefix` + the claim, Unicode NFC and trimmed. Refused: not a string,
 * empty, control characters, too long, and (without a prefix) a ":" (htpasswd names never hold one,
 * so a prefixed name such as "okta:alice" can never be read as another provider's or a file's).
 */
export function externalName(claim: unknown, prefix: string): { ok: true; name: string } | { ok: false; reason: string } {
  if (claim === undefined || claim === null || claim === '') return { ok: false, reason: 'missing' };
  if (typeof claim !== 'string') return { ok: false, reason: 'not a string' };
  const value = claim.normalize('NFC').trim();
  if (value === '' || /\p{Cc}/u.test(value)) return { ok: false, reason: 'empty or holds control characters' };
  if (prefix === '' && value.includes(':')) return { ok: false, reason: 'holds ":", which only a namePrefix may' };
  const name = prefix + value;
  if (name.length > MAX_USER_LENGTH) return { ok: false, reason: `longer than ${MAX_USER_LENGTH} characters` };
  return { ok: true, name };
}

/** A claim by its exact name ("https://example.com/groups" included), else by a dotted path ("realm_access.roles"). */
export function claimAt(payload: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let node: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** A list of names, or one name; anything else means no groups. */
export function groupsFrom(value: unknown): string[] {
  if (typeof value === 'string') return value ? [value] : [];
  if (Array.isArray(value)) return value.filter((group): group is string => typeof group === 'string' && group !== '');
  return [];
}
