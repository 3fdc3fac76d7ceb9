// A small client for the part of MLflow's REST API that holds mlgate's ownership and grants: find an
// experiment (by id or name) or a registered model (by name), read its tags, set and delete tags.
// Used by `mlgate grant|revoke|permissions` (which talk to config.upstream directly, from the gateway
// host) and by the /-/api/permissions API. Routes and shapes: MLflow 2.17 and 3.x, /api/2.0 prefix.
import http from 'node:http';
import https from 'node:https';
import { grantsFromTags, grantTagKey, grantTagKeysOf, MAX_TAG_KEY_LENGTH, type Grantee } from './grant-tags.ts';
import type { PermissionLevel } from './levels.ts';
import type { CarrierKind } from './route-rule.ts';

export interface Tag {
  key: string;
  value: string;
}

/** What a permission decision needs to know about an experiment or registered model. */
export interface ResourceInfo {
  /** The experiment id; registered models have none (they are known by name). */
  id?: string;
  name: string;
  tags: readonly Tag[];
}

export interface ExperimentResource extends ResourceInfo {
  kind: 'experiment';
  id: string;
  /** "active" or "deleted" */
  lifecycleStage?: string;
}

export interface ModelResource extends ResourceInfo {
  kind: 'registered-model';
  id?: undefined;
}

export type MlflowResource = ExperimentResource | ModelResource;

/** Owner and grants of one resource, as the API answers and the CLI prints them. */
export interface PermissionsView {
  kind: CarrierKind;
  id?: string;
  name: string;
  owner: string | null;
  users: { name: string; level: PermissionLevel }[];
  groups: { name: string; level: PermissionLevel }[];
}

export type GrantsErrorCode = 'RESOURCE_DOES_NOT_EXIST' | 'INVALID_PARAMETER_VALUE' | 'UNREACHABLE' | 'UPSTREAM_ERROR';

/** Everything this client throws; `code` says what went wrong, `message` says it for a person. */
export class GrantsClientError extends Error {
  constructor(readonly code: GrantsErrorCode, message: string, readonly upstreamStatus?: number) {
    super(message);
    this.name = 'GrantsClientError';
  }
}

export interface GrantsClientOptions {
  /** Headers sent with every request (e.g. the user MLflow should see in X-Forwarded-User). */
  headers?: Record<string, string>;
  /** How long MLflow may take to answer one request (default 30 s). */
  timeoutMs?: number;
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

/** "experiment 12 (team-a/churn)" or "registered model churn" */
export function describeResource(resource: MlflowResource): string {
  return resource.kind === 'experiment' ? `experiment ${resource.id} (${resource.name})` : `registered model ${resource.name}`;
}

export function permissionsView(resource: MlflowResource): PermissionsView {
  const grants = grantsFromTags(resource.tags);
  const sorted = (levels: Map<string, PermissionLevel>) =>
    [...levels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, level]) => ({ name, level }));
  return {
    kind: resource.kind,
    ...(resource.kind === 'experiment' ? { id: resource.id } : {}),
    name: resource.name,
    owner: grants.owner ?? null,
    users: sorted(grants.users),
    groups: sorted(grants.groups),
  };
}

type Json = Record<string, unknown>;

export class MlflowGrantsClient {
  /** The upstream's origin, as messages name it (the gateway forwards to the origin too). */
  readonly origin: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(upstream: string | URL, options: GrantsClientOptions = {}) {
    this.origin = new URL(upstream).origin;
    this.headers = options.headers ?? {};
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The experiment with this id, or undefined. */
  async getExperiment(id: string): Promise<ExperimentResource | undefined> {
    const answer = await this.call('GET', 'experiments/get', { query: { experiment_id: id }, missingOk: true });
    return answer && experimentFrom(answer.experiment);
  }

  async getExperimentByName(name: string): Promise<ExperimentResource | undefined> {
    const answer = await this.call('GET', 'experiments/get-by-name', { query: { experiment_name: name }, missingOk: true });
    return answer && experimentFrom(answer.experiment);
  }

  /** An id if the text is all digits and such an experiment exists, otherwise a name. */
  async findExperiment(idOrName: string): Promise<ExperimentResource | undefined> {
    if (/^\d+$/.test(idOrName)) {
      let byId: ExperimentResource | undefined;
      try {
        byId = await this.getExperiment(idOrName);
      } catch (err) {
        // e.g. a number too large for the store's id column: not an id, so perhaps a name.
        if (!(err instanceof GrantsClientError) || err.code !== 'INVALID_PARAMETER_VALUE') throw err;
      }
      if (byId) return byId;
    }
    return idOrName === '' ? undefined : this.getExperimentByName(idOrName);
  }

  async getRegisteredModel(name: string): Promise<ModelResource | undefined> {
    if (name === '') return undefined;
    const answer = await this.call('GET', 'registered-models/get', { query: { name }, missingOk: true });
    return answer && modelFrom(answer.registered_model);
  }

  find(kind: CarrierKind, ref: string): Promise<MlflowResource | undefined> {
    return kind === 'experiment' ? this.findExperiment(ref) : this.getRegisteredModel(ref);
  }

  async setTag(resource: MlflowResource, key: string, value: string): Promise<void> {
    if (resource.kind === 'experiment') await this.call('POST', 'experiments/set-experiment-tag', { body: { experiment_id: resource.id, key, value } });
    else await this.call('POST', 'registered-models/set-tag', { body: { name: resource.name, key, value } });
  }

  /**
   * Removes a tag. MLflow 2.17 has no delete-experiment-tag route (it came in 3.0): there the tag is
   * set to the empty string instead, which grantsFromTags reads as "no grant".
   */
  async deleteTag(resource: MlflowResource, key: string): Promise<void> {
    if (resource.kind === 'registered-model') {
      await this.call('DELETE', 'registered-models/delete-tag', { body: { name: resource.name, key }, missingOk: true });
      return;
    }
    try {
      await this.call('POST', 'experiments/delete-experiment-tag', { body: { experiment_id: resource.id, key }, missingOk: true });
    } catch (err) {
      if (!(err instanceof GrantsClientError) || err.code !== 'UPSTREAM_ERROR' || err.upstreamStatus !== 404) throw err;
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

  /** Every active experiment, page by page. */
  async *experiments(): AsyncGenerator<ExperimentResource> {
    let pageToken: string | undefined;
    do {
      const body: Json = { max_results: EXPERIMENT_PAGE, view_type: 'ACTIVE_ONLY' };
      if (pageToken) body.page_token = pageToken;
      const answer = (await this.call('POST', 'experiments/search', { body }))!;
      for (const entry of arrayField(answer, 'experiments')) {
        const experiment = experimentFrom(entry);
        if (experiment) yield experiment;
      }
      pageToken = nextToken(answer);
    } while (pageToken);
  }

  /** Every registered model, page by page. */
  async *registeredModels(): AsyncGenerator<ModelResource> {
    let pageToken: string | undefined;
    do {
      const query: Record<string, string> = { max_results: String(MODEL_PAGE) };
      if (pageToken) query.page_token = pageToken;
      const answer = (await this.call('GET', 'registered-models/search', { query }))!;
      for (const entry of arrayField(answer, 'registered_models')) {
        const model = modelFrom(entry);
        if (model) yield model;
      }
      pageToken = nextToken(answer);
    } while (pageToken);
  }

  /**
   * One MLflow call. A 404 RESOURCE_DOES_NOT_EXIST is undefined when `missingOk`; every other
   * failure throws a GrantsClientError whose message names the upstream.
   */
  private async call(method: 'GET' | 'POST' | 'DELETE', route: string, options: { query?: Record<string, string>; body?: Json; missingOk?: boolean }): Promise<Json | undefined> {
    const url = new URL(`/api/2.0/mlflow/${route}`, this.origin);
    for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
    const payload = options.body ? JSON.stringify(options.body) : undefined;
    const headers: Record<string, string | number> = { accept: 'application/json', ...this.headers };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    let response: { status: number; text: string };
    try {
      response = await send(url, method, headers, payload, this.timeoutMs);
    } catch (err) {
      throw new GrantsClientError('UNREACHABLE', unreachableMessage(this.origin, err, this.timeoutMs));
    }
    const { text } = response;
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = undefined;
    }
    const object = typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Json) : undefined;
    if (response.status >= 200 && response.status < 300) {
      if (!object) throw new GrantsClientError('UPSTREAM_ERROR', `the MLflow tracking server at ${this.origin} answered ${method} ${url.pathname} with something that is not a JSON object`, response.status);
      return object;
    }
    const code = typeof object?.error_code === 'string' ? object.error_code : undefined;
    const message = typeof object?.message === 'string' ? object.message : text.slice(0, 200).trim();
    if (code === 'RESOURCE_DOES_NOT_EXIST' && options.missingOk) return undefined;
    if (code === 'RESOURCE_DOES_NOT_EXIST' || code === 'INVALID_PARAMETER_VALUE') throw new GrantsClientError(code, `MLflow: ${message}`, response.status);
    throw new GrantsClientError('UPSTREAM_ERROR', `the MLflow tracking server at ${this.origin} answered ${method} ${url.pathname} with ${response.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`, response.status);
  }
}

class TimeoutError extends Error {}

/** One request over node:http(s); not fetch, which refuses the spec's "bad ports" (6000, 6665-6669, ...) where someone may run MLflow. */
function send(url: URL, method: string, headers: Record<string, string | number>, payload: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new TimeoutError('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

function unreachableMessage(origin: string, err: unknown, timeoutMs: number): string {
  if (err instanceof TimeoutError) return `the MLflow tracking server at ${origin} did not answer within ${timeoutMs / 1000} s`;
  const error = err as NodeJS.ErrnoException;
  const reason = error?.code ?? error?.message ?? String(err);
  const url = new URL(origin);
  const hint = reason === 'ECONNREFUSED' || reason === 'ENOTFOUND' || reason === 'EHOSTUNREACH'
    ? `; is it running? Start it with: mlflow server --host ${url.hostname} --port ${url.port || (url.protocol === 'https:' ? 443 : 80)}, or point --upstream at it`
    : '';
  return `cannot reach the MLflow tracking server at ${origin} (${reason})${hint}`;
}

function arrayField(body: Json, key: string): unknown[] {
  const value = body[key];
  return Array.isArray(value) ? value : [];
}

function nextToken(body: Json): string | undefined {
  return typeof body.next_page_token === 'string' && body.next_page_token !== '' ? body.next_page_token : undefined;
}

/** MLflow's `[{key, value}]` list; a tag set to "" may come without `value`. Malformed entries are skipped. */
export function tagsFrom(value: unknown): Tag[] {
  if (!Array.isArray(value)) return [];
  const tags: Tag[] = [];
  for (const entry of value) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { key, value: tagValue } = entry as { key?: unknown; value?: unknown };
    if (typeof key === 'string') tags.push({ key, value: typeof tagValue === 'string' ? tagValue : '' });
  }
  return tags;
}

function experimentFrom(value: unknown): ExperimentResource | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as Json;
  if (typeof entry.experiment_id !== 'string' || typeof entry.name !== 'string') return undefined;
  return {
    kind: 'experiment',
    id: entry.experiment_id,
    name: entry.name,
    tags: tagsFrom(entry.tags),
    ...(typeof entry.lifecycle_stage === 'string' ? { lifecycleStage: entry.lifecycle_stage } : {}),
  };
}

function modelFrom(value: unknown): ModelResource | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as Json;
  if (typeof entry.name !== 'string') return undefined;
  return { kind: 'registered-model', name: entry.name, tags: tagsFrom(entry.tags) };
}
