// Who may do what on one experiment or registered model: pure functions of the principal, what the
// upstream says about the resource, and the policy. No I/O, no clock.
//
// API (stable; used by the request path and by the permissions CLI, API and page):
//
//   effectiveLevel(principal, resource, policy): { level, reason }
//     The principal's level on the resource, most specific source first:
//       1. the user is an admin (policy `admins`, a user or an @group) -> MANAGE    reason "admin"
//          or an admin of the resource's workspace (workspaces.<w>.admins) -> MANAGE reason "workspace admin"
//       2. the resource's owner tag (mlgate.owner) names the user     -> MANAGE    reason "owner"
//          an explicit user grant (mlgate.grant.user.<user>)          -> its level reason "user grant"
//       3. the highest explicit grant to one of the user's groups
//          (mlgate.grant.group.<group>)                               -> its level reason "group grant @g"
//       4. the first policy rule for the resource's workspace whose glob
//          matches the resource's NAME and that lists the user, one
//          of their groups, or "*"                                    -> its level reason "rule 2 (experiment team-a/*)"
//       5. the workspace's default: `default` (READ unless set) in the
//          default workspace, workspaces.<w>.default in another (NO_PERMISSIONS unless set)
//                                                                     -> default   reason "default"
//     A more specific source wins even when it gives less: a user granted READ on an experiment
//     stays at READ there even if a group of theirs was granted EDIT.
//     A resource that does not exist (`exists: false`) has no tags, and no name unless the request
//     named it, so this gives it the default (or a rule, by name). The request path
//     (authorize-request.ts) goes further for resources named by id: one that does not exist gets
//     NO_PERMISSIONS, so a user is refused it with the same 403 as one hidden from them.
//
//   resourceInfoFromTags(kind, { id, name, tags }): ResourceInfo
//     For callers that read an experiment or model from MLflow themselves (search results, the
//     permissions API).
//
//   subjectOf(principal, policy): Subject      levelOf(subject, resource): { level, reason }
//     The same decision with the admin flag and groups worked out once: the request path makes one
//     subject per request, on the policy it found at authentication, and decides everything on it.
//
//   mayUseWorkspace(subject, workspace): boolean
//     Whether requests naming the workspace are decided at all: the default workspace for everyone;
//     another for admins, its admins, and users a rule there (or its default) gives READ or more.
//
//   isAdmin(principal, policy): boolean
//   groupsOf(principal, policy): readonly string[]
//     The user's groups: those of the policy file that list them, and those their JWT carries.
//
//   ResourceInfo: { kind: 'experiment' | 'registered-model', workspace, id?, name?, exists, grants }
//     What src/authz/resolver.ts returns for an experiment (by id or name) or a registered model.
import type { Principal } from '../auth/principal.ts';
import { grantsFromTags, type ResourceGrants } from './grant-tags.ts';
import { atLeast, levelRank, type PermissionLevel } from './levels.ts';
import type { Policy, PolicyRule, RuleTarget } from './policy.ts';
import { DEFAULT_WORKSPACE } from './workspace.ts';

export interface ResourceInfo {
  kind: RuleTarget;
  /** The MLflow workspace it lives in (names are unique only within one). */
  workspace: string;
  /** Experiments only: the id. */
  id?: string;
  /** The experiment's or model's name; undefined when it does not exist and the request named it by id. */
  name?: string;
  exists: boolean;
  /** Owner and grants, read from the resource's mlgate.* tags (empty when it does not exist). */
  grants: ResourceGrants;
}

export interface LevelDecision {
  level: PermissionLevel;
  /** Where the level came from, for messages, logs and the permissions page. */
  reason: string;
}

const NO_GROUPS: readonly string[] = Object.freeze([]);

export function groupsOf(principal: Principal, policy: Policy): readonly string[] {
  const listed = policy.memberOf.get(principal.user) ?? NO_GROUPS;
  if (principal.groups.length === 0) return listed;
  if (listed.length === 0) return principal.groups;
  return [...new Set([...listed, ...principal.groups])];
}

export function isAdmin(principal: Principal, policy: Policy): boolean {
  return isAdminWith(principal, policy, () => groupsOf(principal, policy));
}

/** `groups` is asked for only when the policy names admin groups. */
function isAdminWith(principal: Principal, policy: Policy, groups: () => readonly string[]): boolean {
  const { admins } = policy;
  if (admins.users.has(principal.user) && !(admins.htpasswdOnly && principal.external)) return true;
  if (admins.groups.size === 0) return false;
  for (const group of groups()) if (admins.groups.has(group)) return true;
  return false;
}

const ADMIN: LevelDecision = Object.freeze({ level: 'MANAGE', reason: 'admin' });
const WORKSPACE_ADMIN: LevelDecision = Object.freeze({ level: 'MANAGE', reason: 'workspace admin' });
const OWNER: LevelDecision = Object.freeze({ level: 'MANAGE', reason: 'owner' });

/** A principal as one policy sees them: the admin flag and groups worked out once (per request). */
export interface Subject {
  principal: Principal;
  policy: Policy;
  admin: boolean;
  groups: readonly string[];
}

export function subjectOf(principal: Principal, policy: Policy): Subject {
  const groups = groupsOf(principal, policy);
  return { principal, policy, admin: isAdminWith(principal, policy, () => groups), groups };
}

export function effectiveLevel(principal: Principal, resource: ResourceInfo, policy: Policy): LevelDecision {
  return levelOf(subjectOf(principal, policy), resource);
}

/** effectiveLevel for a subject already worked out. */
export function levelOf(subject: Subject, resource: ResourceInfo): LevelDecision {
  const { principal, policy, groups } = subject;
  if (subject.admin) return ADMIN;
  const { workspace } = resource;
  const inDefault = workspace === DEFAULT_WORKSPACE;
  if (policy.workspaces.size > 0 && isWorkspaceAdmin(subject, workspace)) return WORKSPACE_ADMIN;
  const { grants } = resource;
  if (grants.owner !== undefined && grants.owner === principal.user) return OWNER;
  const userGrant = grants.users.get(principal.user);
  if (userGrant !== undefined) return { level: userGrant, reason: 'user grant' };

  if (grants.groups.size > 0 && groups.length > 0) {
    let best: { level: PermissionLevel; group: string } | undefined;
    for (const group of groups) {
      const level = grants.groups.get(group);
      if (level !== undefined && (!best || levelRank(level) > levelRank(best.level))) best = { level, group };
    }
    if (best) return { level: best.level, reason: `group grant @${best.group}` };
  }

  if (resource.name !== undefined) {
    for (const rule of policy.rules) {
      if (rule.on !== resource.kind || !inRuleWorkspace(rule, workspace, inDefault) || !rule.regex.test(resource.name)) continue;
      if (!ruleNames(rule, subject)) continue;
      const where = inDefault ? '' : ` in workspace ${workspace}`;
      return { level: rule.level, reason: `rule ${rule.number} (${rule.on === 'experiment' ? 'experiment' : 'model'} ${rule.pattern}${where})` };
    }
  }
  return { level: inDefault ? policy.defaultLevel : policy.workspaces.get(workspace)?.defaultLevel ?? 'NO_PERMISSIONS', reason: 'default' };
}

function inRuleWorkspace(rule: PolicyRule, workspace: string, inDefault: boolean): boolean {
  // Most rules are the default workspace's: a string comparison, not a pattern.
  return rule.workspace === DEFAULT_WORKSPACE ? inDefault : rule.workspaceRegex.test(workspace);
}

function ruleNames(rule: PolicyRule, subject: Subject): boolean {
  return rule.everyone || rule.users.has(subject.principal.user) || subject.groups.some((group) => rule.groups.has(group));
}

/** Listed in workspaces.<workspace>.admins, by name or through a group. */
function isWorkspaceAdmin(subject: Subject, workspace: string): boolean {
  const admins = subject.policy.workspaces.get(workspace)?.admins;
  if (!admins) return false;
  return admins.users.has(subject.principal.user) || subject.groups.some((group) => admins.groups.has(group));
}

/**
 * Whether the subject may make requests in the workspace at all. A request naming any other is
 * refused before anything is looked up, with the same words whether the workspace exists or not.
 */
export function mayUseWorkspace(subject: Subject, workspace: string): boolean {
  if (subject.admin || workspace === DEFAULT_WORKSPACE) return true;
  const { policy } = subject;
  if (isWorkspaceAdmin(subject, workspace)) return true;
  if (atLeast(policy.workspaces.get(workspace)?.defaultLevel ?? 'NO_PERMISSIONS', 'READ')) return true;
  return policy.rules.some((rule) => atLeast(rule.level, 'READ') && rule.workspace !== DEFAULT_WORKSPACE && rule.workspaceRegex.test(workspace) && ruleNames(rule, subject));
}

/**
 * A ResourceInfo from what an MLflow answer says about an experiment or model (its id, name and
 * tags), for callers that read those themselves (search results, the permissions API).
 */
export function resourceInfoFromTags(kind: RuleTarget, workspace: string, info: { id?: string; name?: string; tags?: readonly { key: string; value: string }[] }): ResourceInfo {
  return { kind, workspace, id: info.id, name: info.name, exists: true, grants: grantsFromTags(info.tags) };
}
