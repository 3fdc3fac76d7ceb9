import { parsePermissionLevel, type PermissionLevel } from './levels.ts';

/**
 * Ownership and grants live in MLflow itself, as tags on the experiment or registered model, so
 * every gateway replica agrees and an MLflow backup holds them. No one below MANAGE may write or
 * delete a tag with this prefix, through any route.
 *
 * The owner is the VALUE of `mlgate.owner` (MLflow checks only a tag value's length, so any user
 * name fits). A grant's grantee is part of the tag's KEY, and MLflow allows only letters, digits,
 * `_`, `-`, `.`, space and `/` there (`:` too from 3.0; validation.py `_validate_tag_name`, at most
 * 250 characters). So a grantee name is written one of two ways:
 *
 *   - a name of letters, digits, `_`, `-` and `.` only (every name that could hold a grant before
 *     e-mail addresses could) as it is, unchanged from earlier versions:
 *       mlgate.grant.user.alice   mlgate.grant.group.team-a
 *   - any other name escaped, under its own prefix: every character but the ASCII letters, digits,
 *     `-` and `.` becomes `_` and two upper-case hex digits per UTF-8 byte (`_` itself is `_5F`):
 *       mlgate.grant.user-enc.alice_40example.com   (alice@example.com)
 *
 * A name takes only one of the two forms, `mlgate.grant.user.` is not a prefix of
 * `mlgate.grant.user-enc.` (nor the other way round), and the escaping is reversible, so no two
 * names share a key. Under `-enc.` only the canonical escaping is read (lower-case hex, a stray
 * `_`, or a name that needs no escaping is ignored). Under the plain prefix any name is read, as
 * earlier versions read it: MLflow also allows space, `/` (and `:`) in a key, so a grant to
 * `bob smith` may have been written by hand as `mlgate.grant.user.bob smith`. Such a legacy key
 * still counts, unless the same grantee also has a canonical key; mlgate writes and revokes the
 * canonical key and removes the legacy one (grantTagKeysOf) so one grantee never keeps two.
 */
const RESERVED_TAG_PREFIX = 'mlgate.';
export const OWNER_TAG = 'mlgate.owner';
const PLAIN_PREFIX = { user: 'mlgate.grant.user.', group: 'mlgate.grant.group.' } as const;
const ESCAPED_PREFIX = { user: 'mlgate.grant.user-enc.', group: 'mlgate.grant.group-enc.' } as const;

/** MLflow's limit on a tag key (experiments and registered models alike). */
export const MAX_TAG_KEY_LENGTH = 250;

export type Grantee = { kind: 'user'; name: string } | { kind: 'group'; name: string };

export interface ResourceGrants {
  owner?: string;
  users: Map<string, PermissionLevel>;
  groups: Map<string, PermissionLevel>;
}

export function isReservedTag(key: string): boolean {
  return key.toLowerCase().startsWith(RESERVED_TAG_PREFIX);
}

/** Names written into a key as they are: what MLflow's tag-key rule allows, minus space and `/`. */
const PLAIN_NAME = /^[\p{L}\p{N}_.-]+$/u;
/** Characters an escaped name keeps as they are; `_` is the escape character. */
const UNESCAPED = /[A-Za-z0-9.-]/;
const ESCAPED_NAME = /^(?:[A-Za-z0-9.-]|_[0-9A-F]{2})+$/;

/** The part of a grant's tag key after its prefix, and whether it was escaped. */
export function encodeGranteeName(name: string): { escaped: boolean; text: string } {
  if (PLAIN_NAME.test(name)) return { escaped: false, text: name };
  let text = '';
  for (const char of name) {
    if (UNESCAPED.test(char)) text += char;
    else for (const byte of Buffer.from(char, 'utf8')) text += `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return { escaped: true, text };
}

/** The name an escaped key part stands for, or undefined if it is not the canonical escaping of a name. */
function unescapeName(text: string): string | undefined {
  if (!ESCAPED_NAME.test(text)) return undefined;
  const bytes = Buffer.from(text.replace(/_([0-9A-F]{2})|[^_]/g, (match, hex: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : match)), 'latin1');
  const name = bytes.toString('utf8');
  // Invalid UTF-8, a name that needs no escaping, or an escaped character that need not be: not ours.
  const again = encodeGranteeName(name);
  return again.escaped && again.text === text ? name : undefined;
}

/**
 * The tag key that holds a grantee's level: mlgate.grant.user.alice, mlgate.grant.group.team-a,
 * mlgate.grant.user-enc.alice_40example.com. May be longer than MLflow allows (granteeNameProblem).
 */
export function grantTagKey(grantee: Grantee): string {
  const { escaped, text } = encodeGranteeName(grantee.name);
  return (escaped ? ESCAPED_PREFIX : PLAIN_PREFIX)[grantee.kind] + text;
}

/**
 * Whose grant a tag key holds, or undefined for any other key (or an escaped key not spelled as
 * mlgate writes it). `canonical` is false for a legacy plain-prefix key of a name that mlgate now
 * writes escaped.
 */
export function granteeOfTagKey(key: string): (Grantee & { canonical: boolean }) | undefined {
  for (const kind of ['user', 'group'] as const) {
    if (key.startsWith(PLAIN_PREFIX[kind])) {
      const name = key.slice(PLAIN_PREFIX[kind].length);
      return name === '' ? undefined : { kind, name, canonical: PLAIN_NAME.test(name) };
    }
    if (key.startsWith(ESCAPED_PREFIX[kind])) {
      const name = unescapeName(key.slice(ESCAPED_PREFIX[kind].length));
      return name === undefined ? undefined : { kind, name, canonical: true };
    }
  }
  return undefined;
}

/** Every key among the tags that holds this grantee's grant: its canonical key and any legacy one. */
export function grantTagKeysOf(tags: readonly { key: string }[] | undefined, grantee: Grantee): string[] {
  return (tags ?? []).map(({ key }) => key).filter((key) => {
    const holder = granteeOfTagKey(key);
    return holder !== undefined && holder.kind === grantee.kind && holder.name === grantee.name;
  });
}

/** Reads owner and grants from a resource's tags (MLflow's `[{key, value}]` list); ignores malformed ones. */
export function grantsFromTags(tags: readonly { key: string; value: string }[] | undefined): ResourceGrants {
  const grants: ResourceGrants = { users: new Map(), groups: new Map() };
  const fromCanonical = new Set<string>();
  for (const { key, value } of tags ?? []) {
    if (key === OWNER_TAG) {
      grants.owner = value;
      continue;
    }
    if (!key.startsWith('mlgate.grant.')) continue;
    const grantee = granteeOfTagKey(key);
    const level = parsePermissionLevel(value);
    if (!grantee || !level) continue;
    const id = `${grantee.kind}:${grantee.name}`;
    if (!grantee.canonical && fromCanonical.has(id)) continue; // the canonical key wins over a legacy one
    if (grantee.canonical) fromCanonical.add(id);
    (grantee.kind === 'user' ? grants.users : grants.groups).set(grantee.name, level);
  }
  return grants;
}
