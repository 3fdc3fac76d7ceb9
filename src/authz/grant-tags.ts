import { parsePermissionLevel, type PermissionLevel } from './levels.ts';

/**
 * Ownership and grants live in MLflow itself, as tags on the experiment or registered model, so
 * every gateway replica agrees and an MLflow backup holds them. No one below MANAGE may write or
 * delete a tag with this prefix, through any route.
 */
export const RESERVED_TAG_PREFIX = 'mlgate.';
export const OWNER_TAG = 'mlgate.owner';
const USER_GRANT_PREFIX = 'mlgate.grant.user.';
const GROUP_GRANT_PREFIX = 'mlgate.grant.group.';

export type Grantee = { kind: 'user'; name: string } | { kind: 'group'; name: string };

export interface ResourceGrants {
  owner?: string;
  users: Map<string, PermissionLevel>;
  groups: Map<string, PermissionLevel>;
}

export function isReservedTag(key: string): boolean {
  return key.toLowerCase().startsWith(RESERVED_TAG_PREFIX);
}

/** The tag key that holds a grantee's level: mlgate.grant.user.alice, mlgate.grant.group.team-a. */
export function grantTagKey(grantee: Grantee): string {
  return (grantee.kind === 'user' ? USER_GRANT_PREFIX : GROUP_GRANT_PREFIX) + grantee.name;
}

/** Reads owner and grants from a resource's tags (MLflow's `[{key, value}]` list); ignores malformed ones. */
export function grantsFromTags(tags: readonly { key: string; value: string }[] | undefined): ResourceGrants {
  const grants: ResourceGrants = { users: new Map(), groups: new Map() };
  for (const { key, value } of tags ?? []) {
    if (key === OWNER_TAG) grants.owner = value;
    else if (key.startsWith(USER_GRANT_PREFIX)) setLevel(grants.users, key.slice(USER_GRANT_PREFIX.length), value);
    else if (key.startsWith(GROUP_GRANT_PREFIX)) setLevel(grants.groups, key.slice(GROUP_GRANT_PREFIX.length), value);
  }
  return grants;
}

function setLevel(into: Map<string, PermissionLevel>, name: string, value: string): void {
  const level = parsePermissionLevel(value);
  if (name && level) into.set(name, level);
}
