// A small client for the part of MLflow's REST API that holds mlgate's ownership and grants: find an
// experiment (by id or name) or a registered model (by name), read its tags, set and delete tags.
// Used by `mlgate grant|revoke|permissions` (which talk to config.upstream directly, from the gateway
// host) and by the /-/api/permissions API. Routes and shapes: MLflow 2.17 and 3.x, /api/2.0 prefix.
//
// With MLflow's workspaces (3.10+, --enable-workspaces) every look-up and tag write is made in one
// workspace (the X-MLFLOW-WORKSPACE header; the default workspace without it), and every resource
// found carries its workspace, so a grant is written where it was looked up. Names are unique only
// within a workspace. A server that ignores the header (MLflow 2.x, 3.x before 3.10) would find and
// change the default workspace's resource of that name instead: another workspace is used only once
// the server says it has workspaces on.
import { grantsFromTags, grantTagKey, grantTagKeysOf, MAX_TAG_KEY_LENGTH, type Grantee } from './grant-tags.ts';
import type { PermissionLevel } from './levels.ts';
import { errorCodeOf, jsonObject, MlflowClient, MlflowError, tagsFrom, type TaggedResource } from './mlflow-client.ts';
import { MlflowServerInfo } from './mlflow-server-info.ts';
import { poolOf, type Upstream } from '../proxy/upstream-pool.ts';
import type { CarrierKind } from './route-rule.ts';
import { DEFAULT_WORKSPACE } from './workspace.ts';


export interface ExperimentResource extends TaggedResource {
  kind: 'experiment';
  /** The MLflow workspace it was found in (the default one on a server without workspaces). */
  workspace: string;
  id: string;
  /** "active" or "deleted" */
  lifecycleStage?: string;
}

export interface ModelResource extends TaggedResource {
  kind: 'registered-model';
  workspace: string;
  id?: undefined;
}

export type MlflowResource = ExperimentResource | ModelResource;

/** Owner and grants of one resource, as the API answers and the CLI prints them. */
export interface PermissionsView {
  kind: CarrierKind;
  /** The MLflow workspace the resource is in ("default" on a server without workspaces). */
  workspace: string;
  id?: string;
  name: string;
  owner: string | null;
  users: { name: string; level: PermissionLevel }[];
  groups: { name: string; level: PermissionLevel }[];
}

interface GrantsClientOptions {
  /** How long MLflow may take to answer one request (default 30 s). */
  timeoutMs?: number;
  /** What the server says about itself, shared with the gateway's other users of it (default: its own). */
  serverInfo?: MlflowServerInfo;
}

/** The largest pages MLflow allows: experiments/search up to 50000, registered-models/search up to 1000. */
const EXPERIMENT_PAGE = 1000;
const MODEL_PAGE = 1000;

/**
 * Why a user or group name cannot hold a grant, or undefined. Any name a principal can have can:
 * names outside MLflow's tag-key characters (an e-mail address) are escaped in the grant's key
 * (grant-tags.ts). Refused: an empty name, control characters, leading or trailing whitespace (no
 * htpasswd user, and the sign-in form trims it), and a name whose key would pass MLflow's 250
 * characters.
 */
export function granteeNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'the user or group name is empty';
  if (/\p{Cc}/u.test(name)) return 'the user or group name contains a control character';
  if (name.trim() !== name) return `"${name}" starts or ends with whitespace; user and group names cannot`;
  if (/\p{Cs}/u.test(name)) return 'the user or group name is not valid Unicode (a lone surrogate)';
  // The longer of the two keys (a group's), so a name fits as user and as group alike.
  const key = grantTagKey({ kind: 'group', name });
  if (key.length > MAX_TAG_KEY_LENGTH) {
    return `"${name.length > 40 ? `${name.slice(0, 40)}...` : name}" is too long to hold a grant: its MLflow tag key would have ${key.length} characters, more than ${MAX_TAG_KEY_LENGTH}`;
  }
  return undefined;
}

/** `alice` is a user, `@team-a` a group (the command-line and page spelling). */
export function parseGrantee(text: string): { grantee: Grantee } | { problem: string } {
  const group = text.startsWith('@');
  const name = group ? text.slice(1) : text;
  const problem = granteeNameProblem(name);
  if (problem) return { problem };
  return { grantee: { kind: group ? 'group' : 'user', name } };
}

export function describeGrantee(grantee: Grantee): string {
  return `${grantee.kind} ${grantee.name}`;
}

/** " in workspace team-a", or nothing for the default workspace (all there is without workspaces). */
export function inWorkspaceWords(workspace: string): string {
  return workspace === DEFAULT_WORKSPACE ? '' : ` in workspace ${workspace}`;
}

/** "experiment 12 (team-a/churn)" or "registered model churn", then " in workspace team-a" outside the default one */
export function describeResource(resource: MlflowResource): string {
  const what = resource.kind === 'experiment' ? `experiment ${resource.id} (${resource.name})` : `registered model ${resource.name}`;
  return what + inWorkspaceWords(resource.workspace);
}

export function permissionsView(resource: MlflowResource): PermissionsView {
  const grants = grantsFromTags(resource.tags);
  const sorted = (levels: Map<string, PermissionLevel>) =>
    [...levels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, level]) => ({ name, level }));
  return {
    kind: resource.kind,
    workspace: resource.workspace,
    ...(resource.kind === 'experiment' ? { id: resource.id } : {}),
    name: resource.name,
    owner: grants.owner ?? null,
    users: sorted(grants.users),
    groups: sorted(grants.groups),
  };
}

type Json = Record<string, unknown>;

/** Throws MlflowError, whose `code` says what went wrong and whose `message` says it for a person. */
export class MlflowGrantsClient {
  private readonly mlflow: MlflowClient;
  private readonly serverInfo: MlflowServerInfo;

  constructor(upstream: Upstream, options: GrantsClientOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 30_000;
    // One pool for both: a server found refused is skipped by the other too.
    const pool = poolOf(upstream);
    this.mlflow = new MlflowClient({ upstream: pool, timeoutMs });
    this.serverInfo = options.serverInfo ?? new MlflowServerInfo({ upstream: pool, timeoutMs: Math.min(timeoutMs, 5_000) });
  }

  /** The upstream's origin, as messages name it (the gateway forwards to the origin too). */
  get origin(): string {
    return this.mlflow.origin;
  }

  /** Whether the MLflow server has workspaces on (MLflow's server-info, re-asked every 30 s); undefined when it cannot tell. */
  async workspacesEnabled(): Promise<boolean | undefined> {
    return (await this.serverInfo.facts()).workspacesEnabled;
  }

  /**
   * The experiment (by id, or by name: see findExperiment) or registered model (by name) in the
   * workspace, or undefined when there is none there (or no such workspace). Another workspace than
   * the default one on a server without workspaces throws INVALID_PARAMETER_VALUE.
   */
  async find(kind: CarrierKind, ref: string, workspace = DEFAULT_WORKSPACE): Promise<MlflowResource | undefined> {
    await this.checkWorkspaces(workspace);
    return kind === 'experiment' ? this.findExperiment(ref, workspace) : this.getRegisteredModel(ref, workspace);
  }

  /** An id if the text is all digits and such an experiment exists, otherwise a name. */
  async findExperiment(idOrName: string, workspace = DEFAULT_WORKSPACE): Promise<ExperimentResource | undefined> {
    await this.checkWorkspaces(workspace);
    if (/^\d+$/.test(idOrName)) {
      let byId: ExperimentResource | undefined;
      try {
        byId = await this.getExperiment(idOrName, workspace);
      } catch (err) {
        // e.g. a number too large for the store's id column: not an id, so perhaps a name.
        if (!(err instanceof MlflowError) || err.code !== 'INVALID_PARAMETER_VALUE') throw err;
      }
      if (byId) return byId;
    }
    return idOrName === '' ? undefined : this.getExperimentByName(idOrName, workspace);
  }

  /** The experiment with this id, or undefined. */
  private async getExperiment(id: string, workspace: string): Promise<ExperimentResource | undefined> {
    const answer = await this.call('GET', 'experiments/get', { query: { experiment_id: id }, missingOk: true, workspace });
    return answer && experimentFrom(answer.experiment, workspace);
  }

  private async getExperimentByName(name: string, workspace: string): Promise<ExperimentResource | undefined> {
    const answer = await this.call('GET', 'experiments/get-by-name', { query: { experiment_name: name }, missingOk: true, workspace });
    return answer && experimentFrom(answer.experiment, workspace);
  }

  private async getRegisteredModel(name: string, workspace: string): Promise<ModelResource | undefined> {
    if (name === '') return undefined;
    const answer = await this.call('GET', 'registered-models/get', { query: { name }, missingOk: true, workspace });
    return answer && modelFrom(answer.registered_model, workspace);
  }

  /** In the resource's own workspace, like every write below. */
  async setTag(resource: MlflowResource, key: string, value: string): Promise<void> {
    const { workspace } = resource;
    if (resource.kind === 'experiment') await this.call('POST', 'experiments/set-experiment-tag', { body: { experiment_id: resource.id, key, value }, workspace });
    else await this.call('POST', 'registered-models/set-tag', { body: { name: resource.name, key, value }, workspace });
  }

  /**
   * Removes a tag. MLflow 2.17 has no delete-experiment-tag route (it came in 3.0): there the tag is
   * set to the empty string instead, which grantsFromTags reads as "no grant".
   */
  async deleteTag(resource: MlflowResource, key: string): Promise<void> {
    const { workspace } = resource;
    if (resource.kind === 'registered-model') {
      await this.call('DELETE', 'registered-models/delete-tag', { body: { name: resource.name, key }, missingOk: true, workspace });
      return;
    }
    try {
      await this.call('POST', 'experiments/delete-experiment-tag', { body: { experiment_id: resource.id, key }, missingOk: true, workspace });
    } catch (err) {
      if (!(err instanceof MlflowError) || err.code !== 'UPSTREAM_ERROR' || err.upstreamStatus !== 404) throw err;
      await this.setTag(resource, key, '');
    }
  }

  /** Writes the grantee's canonical key; a legacy key of the same grantee (grant-tags.ts) is removed. */
  async setGrant(resource: MlflowResource, grantee: Grantee, level: PermissionLevel): Promise<void> {
    const key = grantTagKey(grantee);
    await this.setTag(resource, key, level);
    for (const legacy of grantTagKeysOf(resource.tags, grantee)) if (legacy !== key) await this.deleteTag(resource, legacy);
  }

  /** False when there was no grant to remove (nothing is changed then). Removes every key that holds it. */
  async removeGrant(resource: MlflowResource, grantee: Grantee): Promise<boolean> {
    const grants = grantsFromTags(resource.tags);
    if (!(grantee.kind === 'user' ? grants.users : grants.groups).has(grantee.name)) return false;
    for (const key of grantTagKeysOf(resource.tags, grantee)) await this.deleteTag(resource, key);
    return true;
  }

  /** Every active experiment of the workspace, page by page. */
  async *experiments(workspace = DEFAULT_WORKSPACE): AsyncGenerator<ExperimentResource> {
    await this.checkWorkspaces(workspace);
    let pageToken: string | undefined;
    do {
      const body: Json = { max_results: EXPERIMENT_PAGE, view_type: 'ACTIVE_ONLY' };
      if (pageToken) body.page_token = pageToken;
      const answer = (await this.call('POST', 'experiments/search', { body, workspace }))!;
      for (const entry of arrayField(answer, 'experiments')) {
        const experiment = experimentFrom(entry, workspace);
        if (experiment) yield experiment;
      }
      pageToken = nextToken(answer);
    } while (pageToken);
  }

  /** Every registered model of the workspace, page by page. */
  async *registeredModels(workspace = DEFAULT_WORKSPACE): AsyncGenerator<ModelResource> {
    await this.checkWorkspaces(workspace);
    let pageToken: string | undefined;
    do {
      const query: Record<string, string> = { max_results: String(MODEL_PAGE) };
      if (pageToken) query.page_token = pageToken;
      const answer = (await this.call('GET', 'registered-models/search', { query, workspace }))!;
      for (const entry of arrayField(answer, 'registered_models')) {
        const model = modelFrom(entry, workspace);
        if (model) yield model;
      }
      pageToken = nextToken(answer);
    } while (pageToken);
  }

  /**
   * Another workspace than the default one only on a server that acts in it: MLflow 2.x and 3.x
   * before 3.10 ignore the header, and would find and change the default workspace's resource.
   */
  private async checkWorkspaces(workspace: string): Promise<void> {
    if (workspace === DEFAULT_WORKSPACE) return;
    const facts = await this.serverInfo.facts();
    if (facts.workspacesEnabled === true) return;
    if (facts.workspacesEnabled === false) {
      throw new MlflowError('INVALID_PARAMETER_VALUE', `the MLflow tracking server at ${this.origin} has no workspaces (that takes MLflow 3.10 or later, started with mlflow server --enable-workspaces), so workspace ${workspace} cannot be used`);
    }
    throw new MlflowError('UNREACHABLE', facts.problem ?? `cannot tell whether the MLflow tracking server at ${this.origin} has workspaces`);
  }

  /**
   * One MLflow call, in `workspace` (the default one without). A RESOURCE_DOES_NOT_EXIST (of the
   * resource, or of the workspace itself) is undefined when `missingOk`; every other failure throws
   * an MlflowError whose message names the upstream.
   */
  private async call(method: 'GET' | 'POST' | 'DELETE', route: string, options: { query?: Record<string, string>; body?: Json; missingOk?: boolean; workspace?: string }): Promise<Json | undefined> {
    const path = `/api/2.0/mlflow/${route}`;
    const query = new URLSearchParams(options.query).toString();
    const answer = await this.mlflow.request(method, query ? `${path}?${query}` : path, options.body, options.workspace);
    if (options.missingOk && answer.status >= 400 && errorCodeOf(answer) === 'RESOURCE_DOES_NOT_EXIST') return undefined;
    return this.mlflow.objectOf(answer, `${method} ${path}`);
  }
}

function arrayField(body: Json, key: string): unknown[] {
  const value = body[key];
  return Array.isArray(value) ? value : [];
}

function nextToken(body: Json): string | undefined {
  return typeof body.next_page_token === 'string' && body.next_page_token !== '' ? body.next_page_token : undefined;
}

function experimentFrom(value: unknown, workspace: string): ExperimentResource | undefined {
  const entry = jsonObject(value);
  if (typeof entry?.experiment_id !== 'string' || typeof entry.name !== 'string') return undefined;
  return {
    kind: 'experiment',
    workspace,
    id: entry.experiment_id,
    name: entry.name,
    tags: tagsFrom(entry.tags),
    ...(typeof entry.lifecycle_stage === 'string' ? { lifecycleStage: entry.lifecycle_stage } : {}),
  };
}

function modelFrom(value: unknown, workspace: string): ModelResource | undefined {
  const entry = jsonObject(value);
  if (typeof entry?.name !== 'string') return undefined;
  return { kind: 'registered-model', workspace, name: entry.name, tags: tagsFrom(entry.tags) };
}
