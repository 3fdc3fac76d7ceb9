// Asks the upstream MLflow what a request's resources are: the experiment a run, logged model,
// trace or dataset lives in, and an experiment's or registered model's name and mlgate.* tags.
// It asks through mlflow-client.ts, on kept-alive connections of its own.
//
// Caching (a hot loop of runs/log-metric costs two map look-ups):
// - run, logged model -> experiment: never moves (no MLflow route takes the id of an existing one
//   with another experiment; test/mlflow/trace-associations.test.ts); a large LRU without expiry.
// - trace -> experiment and dataset -> experiments are not cached: MLflow moves both (StartTraceV3
//   with an existing trace id re-homes the trace; datasets/add-experiments, remove-experiments), so
//   each check asks where they are now (docs/security.md "What can move"). A trace id that names
//   nothing is not remembered either: clients choose trace ids, so it may exist a moment later.
// - experiment (by id and by name), registered model: `cacheTtlMs` (5 s by
//   default), and dropped at once by the writes that pass through this gateway (tag writes,
//   renames, deletes, creates: see invalidate*). Other gateway replicas see a change within the TTL;
//   with state.redis, grant changes by the next request (`freshness`, src/state/grant-invalidation.ts).
// - an invalidation also discards the answers of look-ups still under way (`generation`): one started
//   before the change may carry what MLflow held before it, and must not be cached after it.
// - concurrent look-ups of the same thing share one upstream call.
// - a look-up that finds nothing (a made-up run, logged model or dataset id; not a trace id, see
//   above) is remembered for `missingTtlMs` (authz.cacheTtl, at most 5 s), so repeating a request
//   of made-up ids costs MLflow nothing; a create by its own id that passes forgets it (forgetMissing).
// - each request may start at most so many look-ups (authz.maxLookupsPerRequest): the authorizer
//   asks through `forRequest(budget)`, a view with the same caches that charges the budget for
//   every look-up it starts (cache hits, remembered misses and shared calls are free).
// - a lookup that fails (upstream down, a 5xx) is not cached and throws MlflowError.
// - with MLflow's workspaces, every look-up is made in one workspace (inWorkspace, forRequest) and
//   every cache entry is keyed by it: names are unique only within a workspace, and an id from
//   another workspace is not found in this one (test/mlflow/workspaces.test.ts).
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../state/bounded-cache.ts';
import type { ResourceInfo } from './decide.ts';
import { grantsFromTags, grantTagKey, OWNER_TAG, type ResourceGrants } from './grant-tags.ts';
import { errorCodeOf, jsonObject, MlflowClient, tagsFrom, type MlflowAnswer } from './mlflow-client.ts';
import { DEFAULT_WORKSPACE } from './workspace.ts';
import type { Upstream } from '../proxy/upstream-pool.ts';

/** The upstream could not answer a look-up: the request gets a 502 (MLflow's client retries those). */

interface ResolverOptions {
  /** The MLflow server, or the gateway's pool of them (src/proxy/upstream-pool.ts). */
  upstream: Upstream;
  /** How long an experiment's or model's name and tags are trusted. */
  cacheTtlMs: number;
  /** How long one upstream look-up may take. */
  timeoutMs: number;
  /** Run/logged-model/trace -> experiment entries kept (default 100 000). */
  stableEntries?: number;
  /** Experiments and models kept (default 10 000). */
  entries?: number;
  /** How long "no such run/trace/logged model/dataset" is remembered (default: cacheTtlMs, at most 5 s). */
  missingTtlMs?: number;
  /** Header to name the caller upstream (proxy.userHeader), with value `mlgate`, so MLflow's logs tell look-ups apart. */
  userHeader?: string;
  /**
   * Called before the experiment, model and grant-holder caches are read (once per request view):
   * resolves when they hold nothing older than the grant changes other gateways announced
   * (GrantInvalidation.check). Undefined, or a call answering undefined: nothing to wait for.
   */
  freshness?: () => Promise<void> | undefined;
}

const NO_GRANTS: ResourceGrants = Object.freeze({ users: new Map(), groups: new Map() }) as ResourceGrants;

interface StableFacts {
  experimentId: string;
  /** Its artifact_uri (runs) or artifact_location (logged models). */
  artifacts: string | undefined;
}

/** Groups whose grants can let a user into a workspace (two searches each): a JWT may carry hundreds. */
const MAX_GRANT_GROUPS = 32;

/** Trace ids asked about in one traces/batchGetInfos call. */
const TRACE_BATCH = 100;

/** A request started more look-ups than authz.maxLookupsPerRequest allows: the request gets a 400. */
export class LookupBoundError extends Error {
  constructor(readonly bound: number) {
    super(`this request needs more than ${bound} look-ups in MLflow of resources mlgate has not seen lately, the most it makes for one request (authz.maxLookupsPerRequest); name fewer runs, experiments, models or traces per request`);
    this.name = 'LookupBoundError';
  }
}

/** The look-ups one request may start; past `max`, starting another throws LookupBoundError. */
export class LookupBudget {
  spent = 0;
  constructor(readonly max: number) {}

  spend(): void {
    if (this.spent >= this.max) throw new LookupBoundError(this.max);
    this.spent++;
  }
}

/** An experiment the request names by id (or through a run...) that does not exist (in its workspace). */
export function missingExperiment(workspace: string, id?: string, name?: string): ResourceInfo {
  return { kind: 'experiment', workspace, id, name, exists: false, grants: NO_GRANTS };
}

export class Resolver {
  /** Shared with the per-request views (forRequest), which count into the same numbers. */
  private readonly counters = { lookups: 0 };
  /** Bumped by every invalidation of what expires; a look-up stores its answer only if it is unchanged. */
  private readonly generation = { value: 0 };
  private readonly freshness?: () => Promise<void> | undefined;
  /** A per-request view's freshness check, made once (forRequest). */
  private freshForRequest?: { check?: Promise<void> };
  /** The budget a per-request view charges; none on the resolver itself. */
  private budget?: LookupBudget;
  /** The MLflow workspace look-ups are made in: a view's (inWorkspace, forRequest). */
  readonly workspace: string = DEFAULT_WORKSPACE;
  /** A per-request view's traces looked up together (primeTraces). */
  private tracesNow?: { asked: ReadonlySet<string>; found: ReadonlyMap<string, string> };
  private readonly mlflow: MlflowClient;
  /** What never changes about a run or logged model: its experiment and where its artifacts are. */
  private readonly stable: LRUCache<string, StableFacts>;
  private readonly experimentsById: LRUCache<string, ResourceInfo>;
  private readonly experimentsByName: LRUCache<string, ResourceInfo>;
  private readonly models: LRUCache<string, ResourceInfo>;
  private readonly pending = new Map<string, Promise<unknown>>();
  /** Keys of look-ups that found nothing, for a few seconds. */
  private readonly missing: LRUCache<string, true>;
  /** Per workspace and user (with groups): whether anything there is theirs or granted to them. */
  private readonly grantHolders: LRUCache<string, boolean>;

  constructor(options: ResolverOptions) {
    this.mlflow = new MlflowClient({ upstream: options.upstream, timeoutMs: options.timeoutMs, userHeader: options.userHeader });
    this.freshness = options.freshness;
    this.stable = boundedCache(options.stableEntries ?? 100_000);
    const ttl = Math.max(1, options.cacheTtlMs);
    const max = options.entries ?? 10_000;
    this.experimentsById = boundedCache(max, { ttl });
    this.experimentsByName = boundedCache(max, { ttl });
    this.models = boundedCache(max, { ttl });
    this.grantHolders = boundedCache(max, { ttl });
    this.missing = boundedCache(max, { ttl: Math.max(1, options.missingTtlMs ?? Math.min(5000, options.cacheTtlMs)) });
  }

  /** Upstream calls made (tests and benchmarks check the hot path makes none). */
  get lookups(): number {
    return this.counters.lookups;
  }

  /**
   * This resolver (the same caches and shared calls) for one request: every look-up it starts is
   * charged to `budget`, and one past its bound throws LookupBoundError before it is made.
   */
  forRequest(budget: LookupBudget, workspace: string): Resolver {
    const view = Object.create(this) as Resolver & { workspace: string };
    view.budget = budget;
    view.workspace = workspace;
    view.freshForRequest = {};
    return view;
  }

  /** This resolver, looking up (and invalidating) in `workspace`. */
  inWorkspace(workspace: string): Resolver {
    if (workspace === this.workspace) return this;
    const view = Object.create(this) as Resolver & { workspace: string };
    view.workspace = workspace;
    return view;
  }

  /**
   * Before the caches that hold grants are read: the freshness check, once per request view (every
   * time on the resolver itself and inWorkspace views, which serve no one request).
   */
  private fresh(): Promise<void> | undefined {
    if (!this.freshness) return undefined;
    const perRequest = this.freshForRequest;
    if (!perRequest) return this.freshness();
    return perRequest.check ??= this.freshness();
  }

  /** Runs `read` once the caches that hold grants are fresh (at once without state.redis). */
  private whenFresh<T>(read: () => Promise<T>): Promise<T> {
    const check = this.fresh();
    return check ? check.then(read) : read();
  }

  /** A cache key of this view's workspace ("|" is in no workspace name, so no two keys meet). */
  private key(thing: string): string {
    return `${this.workspace}|${thing}`;
  }

  // ---- experiments and registered models (TTL) ----

  /** The experiment with this id: name and grants, or `exists: false`. */
  experiment(id: string): Promise<ResourceInfo> {
    return this.whenFresh(() => {
      const key = this.key(id);
      const hit = this.experimentsById.get(key);
      if (hit) return Promise.resolve(hit);
      return this.once(`experiment:${id}`, async () => {
        const generation = this.generation.value;
        const answer = await this.call(`/api/2.0/mlflow/experiments/get?experiment_id=${encodeURIComponent(id)}`, `experiment ${id}`);
        const info = answer ? experimentInfo(this.workspace, answer.experiment, id) : missingExperiment(this.workspace, id);
        if (generation !== this.generation.value) return info;
        this.experimentsById.set(key, info);
        if (info.exists && info.name !== undefined) this.experimentsByName.set(this.key(info.name), info);
        return info;
      });
    });
  }

  /** The experiment with this name, or `exists: false` (with the name, which policy rules match on). */
  experimentByName(name: string): Promise<ResourceInfo> {
    return this.whenFresh(() => {
      const key = this.key(name);
      const hit = this.experimentsByName.get(key);
      if (hit) return Promise.resolve(hit);
      return this.once(`experiment-name:${name}`, async () => {
        const generation = this.generation.value;
        const answer = await this.call(`/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`, `experiment "${name}"`);
        const info = answer ? experimentInfo(this.workspace, answer.experiment) : missingExperiment(this.workspace, undefined, name);
        if (generation !== this.generation.value) return info;
        this.experimentsByName.set(key, info);
        if (info.exists && info.id !== undefined) this.experimentsById.set(this.key(info.id), info);
        return info;
      });
    });
  }

  registeredModel(name: string): Promise<ResourceInfo> {
    return this.whenFresh(() => {
      const key = this.key(name);
      const hit = this.models.get(key);
      if (hit) return Promise.resolve(hit);
      return this.once(`model:${name}`, async () => {
        const generation = this.generation.value;
        const answer = await this.call(`/api/2.0/mlflow/registered-models/get?name=${encodeURIComponent(name)}`, `registered model "${name}"`);
        const model = jsonObject(answer?.registered_model);
        const { workspace } = this;
        const info: ResourceInfo = model
          ? { kind: 'registered-model', workspace, name: typeof model.name === 'string' ? model.name : name, exists: true, grants: grantsFromTags(tagsFrom(model.tags)) }
          : { kind: 'registered-model', workspace, name, exists: false, grants: NO_GRANTS };
        if (generation === this.generation.value) this.models.set(key, info);
        return info;
      });
    });
  }

  /**
   * Whether an active experiment or registered model of this view's workspace is the user's (owner
   * tag) or holds a grant above NO_PERMISSIONS to the user or one of their groups: such a grant lets
   * the user into the workspace (decide.ts mayUseWorkspace covers the policy's ways in). Searches
   * with max_results 1, one per owner or grant key and kind, in parallel; a workspace that does not
   * exist holds nothing. Cached for the TTL, and dropped by grant writes through this gateway.
   */
  holdsGrant(user: string, groups: readonly string[]): Promise<boolean> {
    return this.whenFresh(() => this.holdsGrantNow(user, groups));
  }

  private holdsGrantNow(user: string, groups: readonly string[]): Promise<boolean> {
    const thing = `grants:${user}\n${groups.join('\n')}`;
    const hit = this.grantHolders.get(this.key(thing));
    if (hit !== undefined) return Promise.resolve(hit);
    return this.once(thing, async () => {
      const generation = this.generation.value;
      const filters = [
        ...(/['\\]/.test(user) ? [] : [`tags.\`${OWNER_TAG}\` = '${user}'`]), // a quote in a name cannot be put in MLflow's filter
        ...[{ kind: 'user', name: user } as const, ...groups.slice(0, MAX_GRANT_GROUPS).map((name) => ({ kind: 'group', name }) as const)]
          .map((grantee) => `tags.\`${grantTagKey(grantee)}\` != 'NO_PERMISSIONS'`),
      ];
      const found = await Promise.all(filters.flatMap((filter) => [this.anyFound('POST', '/api/2.0/mlflow/experiments/search', filter), this.anyFound('GET', '/api/2.0/mlflow/registered-models/search', filter)]));
      const holds = found.includes(true);
      if (generation === this.generation.value) this.grantHolders.set(this.key(thing), holds);
      return holds;
    });
  }

  private async anyFound(method: 'GET' | 'POST', path: string, filter: string): Promise<boolean> {
    this.counters.lookups++;
    const answer = method === 'GET'
      ? await this.mlflow.request('GET', `${path}?${new URLSearchParams({ filter, max_results: '1' })}`, undefined, this.workspace)
      : await this.mlflow.request('POST', path, { filter, max_results: 1 }, this.workspace);
    if (answer.status === 404) return false;
    const json = this.mlflow.objectOf(answer, `mlgate's search for grants in workspace ${this.workspace}`);
    const list = json.experiments ?? json.registered_models;
    return Array.isArray(list) && list.length > 0;
  }

  // ---- things that live in one experiment for good (no expiry) ----

  /** The experiment id of a run; undefined when there is no such run. */
  experimentOfRun(runId: string): Promise<string | undefined> {
    return this.runFacts(runId).then((facts) => facts?.experimentId);
  }

  /** Where a run's artifacts live (fixed when the run is created). */
  artifactUriOfRun(runId: string): Promise<string | undefined> {
    return this.runFacts(runId).then((facts) => facts?.artifacts);
  }

  /** Where a logged model's artifacts live (3.x; fixed when it is created). */
  artifactLocationOfLoggedModel(modelId: string): Promise<string | undefined> {
    return this.loggedModelFacts(modelId).then((facts) => facts?.artifacts);
  }

  experimentOfLoggedModel(modelId: string): Promise<string | undefined> {
    return this.loggedModelFacts(modelId).then((facts) => facts?.experimentId);
  }

  private runFacts(runId: string): Promise<StableFacts | undefined> {
    return this.stableLookup(`run:${runId}`, `/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(runId)}`, `run ${runId}`,
      (json) => jsonObject(jsonObject(json.run)?.info), 'artifact_uri');
  }

  private loggedModelFacts(modelId: string): Promise<StableFacts | undefined> {
    return this.stableLookup(`logged-model:${modelId}`, `/api/2.0/mlflow/logged-models/${encodeURIComponent(modelId)}`, `logged model ${modelId}`,
      (json) => jsonObject(jsonObject(json.model)?.info), 'artifact_location');
  }

  /** MLflow 3 answers on /api/3.0/mlflow/traces/<id>; 2.x only on /api/2.0/mlflow/traces/<id>/info. */
  experimentOfTrace(traceId: string): Promise<string | undefined> {
    if (this.tracesNow?.asked.has(traceId)) return Promise.resolve(this.tracesNow.found.get(traceId));
    // Not cached, and a miss not remembered: a trace can move, and its id may be created any moment.
    return this.once(`trace:${traceId}`, async () => {
      const v3 = await this.request(`/api/3.0/mlflow/traces/${encodeURIComponent(traceId)}`);
      let id: unknown;
      if (v3.status === 200 && v3.json) {
        id = jsonObject(jsonObject(jsonObject(jsonObject(v3.json.trace)?.trace_info)?.trace_location)?.mlflow_experiment)?.experiment_id;
      } else if (isMissing(v3) && errorCodeOf(v3) === 'RESOURCE_DOES_NOT_EXIST') {
        return undefined;
      } else {
        const v2 = await this.call(`/api/2.0/mlflow/traces/${encodeURIComponent(traceId)}/info`, `trace ${traceId}`);
        id = jsonObject(v2?.trace_info)?.experiment_id;
      }
      return typeof id === 'string' && id !== '' ? id : undefined;
    }, false);
  }

  /**
   * For this request only (a view from forRequest): where these traces are now, asked in one call
   * per TRACE_BATCH ids (MLflow 3's traces/batchGetInfos) instead of one per trace. An OTLP export
   * names up to a thousand; each call is one look-up of the request's budget.
   */
  async primeTraces(traceIds: readonly string[]): Promise<void> {
    const asked = new Set<string>();
    const found = new Map<string, string>();
    for (let i = 0; i < traceIds.length; i += TRACE_BATCH) {
      const chunk = traceIds.slice(i, i + TRACE_BATCH);
      this.budget?.spend();
      this.counters.lookups++;
      const batch = await this.mlflow.request('POST', '/api/3.0/mlflow/traces/batchGetInfos', { trace_ids: chunk }, this.workspace);
      const answer = this.mlflow.objectOf(batch, `mlgate's look-up of ${chunk.length} traces`);
      for (const info of Array.isArray(answer.trace_infos) ? answer.trace_infos : []) {
        const id = jsonObject(info)?.trace_id;
        const experimentId = jsonObject(jsonObject(jsonObject(info)?.trace_location)?.mlflow_experiment)?.experiment_id;
        if (typeof id === 'string' && typeof experimentId === 'string' && experimentId !== '') found.set(id, experimentId);
      }
      for (const id of chunk) asked.add(id);
    }
    this.tracesNow = { asked, found };
  }

  /** The experiments a dataset is linked to now (it can be linked to more, or fewer: not cached). Undefined: no such dataset. */
  experimentsOfDataset(datasetId: string): Promise<readonly string[] | undefined> {
    return this.once(`dataset:${datasetId}`, async () => {
      const answer = await this.call(`/api/3.0/mlflow/datasets/${encodeURIComponent(datasetId)}/experiment-ids`, `dataset ${datasetId}`);
      if (!answer) return undefined;
      return Array.isArray(answer.experiment_ids) ? answer.experiment_ids.filter((id): id is string => typeof id === 'string') : [];
    });
  }

  // ---- invalidation: writes that pass through the gateway ----

  /** After a tag write, rename, delete, restore or create of an experiment (id unknown for creates). */
  invalidateExperiment(id?: string): void {
    this.discardLookupsUnderWay();
    if (id === undefined) this.experimentsById.clear();
    else this.experimentsById.delete(this.key(id));
    // Names point at ids and the other way round; renames and creates are rare: drop them all.
    this.experimentsByName.clear();
    this.grantHolders.clear();
  }

  invalidateRegisteredModel(name: string): void {
    this.discardLookupsUnderWay();
    this.models.delete(this.key(name));
    this.grantHolders.clear();
  }

  invalidateDataset(id: string): void {
    this.missing.delete(this.key(`dataset:${id}`));
  }

  /**
   * Forgets that these were missing (`run:<id>`, `trace:<id>`, `logged-model:<id>`...): a request
   * that creates them by their own id (a trace's start, OTLP spans) passed.
   */
  forgetMissing(keys: readonly string[]): void {
    for (const key of keys) this.missing.delete(this.key(key));
  }

  /** Drops everything that expires (not run -> experiment, which never changes). */
  invalidateAll(): void {
    this.discardLookupsUnderWay();
    this.experimentsById.clear();
    this.experimentsByName.clear();
    this.models.clear();
    this.grantHolders.clear();
    this.missing.clear();
  }

  close(): void {
    this.mlflow.close();
  }

  /**
   * Look-ups under way may carry what MLflow held before the change: their answers are not cached,
   * and a request from now on starts its own instead of sharing theirs.
   */
  private discardLookupsUnderWay(): void {
    this.generation.value++;
    this.pending.clear();
  }

  // ---- plumbing ----

  /** One look-up gives both facts: `infoOf` finds the object holding experiment_id and `artifactsField`. */
  private stableLookup(thing: string, path: string, what: string, infoOf: (json: Record<string, unknown>) => Record<string, unknown> | undefined, artifactsField: string): Promise<StableFacts | undefined> {
    const key = this.key(thing);
    const hit = this.stable.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    return this.once(thing, async () => {
      const answer = await this.call(path, what);
      const info = answer ? infoOf(answer) : undefined;
      const experimentId = info?.experiment_id;
      if (typeof experimentId !== 'string' || experimentId === '') return undefined;
      const artifacts = info![artifactsField];
      const facts: StableFacts = { experimentId, artifacts: typeof artifacts === 'string' && artifacts !== '' ? artifacts : undefined };
      this.stable.set(key, facts);
      return facts;
    });
  }

  /**
   * One look-up per key at a time (concurrent callers share it). A look-up that found nothing
   * (undefined) is remembered for missingTtlMs unless `rememberMiss` is false; a new one is charged
   * to the request's budget.
   */
  private once<T>(thing: string, lookup: () => Promise<T>, rememberMiss = true): Promise<T> {
    const key = this.key(thing);
    const running = this.pending.get(key) as Promise<T> | undefined;
    if (running) return running;
    if (rememberMiss && this.missing.has(key)) return Promise.resolve(undefined as T);
    this.budget?.spend();
    const started = lookup().then((found) => {
      if (found === undefined && rememberMiss) this.missing.set(key, true);
      return found;
    }).finally(() => {
      if (this.pending.get(key) === started) this.pending.delete(key);
    });
    this.pending.set(key, started);
    return started;
  }

  // ---- searches paged on for the caller (search-filter.ts) ----

  /**
   * One page of a search, asked with the caller's own parameters: a GET's as its query string, a
   * POST's as its JSON body. Throws unless MLflow answers it with a JSON object.
   */
  async searchPage(method: 'GET' | 'POST', path: string, message: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.counters.lookups++;
    let answer: MlflowAnswer;
    if (method === 'GET') {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(message)) {
        for (const one of Array.isArray(value) ? value : [value]) if (one !== undefined && one !== null) query.append(key, String(one));
      }
      answer = await this.mlflow.request('GET', `${path}?${query}`, undefined, this.workspace);
    } else {
      answer = await this.mlflow.request('POST', path, message, this.workspace);
    }
    return this.mlflow.objectOf(answer, `mlgate's request for the next page of ${path}`);
  }

  /** The JSON of a success, undefined when MLflow says there is no such thing; throws otherwise. */
  private async call(path: string, what: string): Promise<Record<string, unknown> | undefined> {
    const answer = await this.request(path);
    return isMissing(answer) ? undefined : this.mlflow.objectOf(answer, `mlgate's look-up of ${what}`);
  }

  private request(path: string): Promise<MlflowAnswer> {
    this.counters.lookups++;
    return this.mlflow.request('GET', path, undefined, this.workspace);
  }
}

/**
 * MLflow's "no such thing": 404 (RESOURCE_DOES_NOT_EXIST, or no route at all on an older server)
 * or 400 INVALID_PARAMETER_VALUE for an id it cannot read. The request is then decided as for a
 * resource the user has no grant on, and if allowed MLflow gives its own answer.
 */
function isMissing(answer: MlflowAnswer): boolean {
  return answer.status === 404 || (answer.status === 400 && errorCodeOf(answer) === 'INVALID_PARAMETER_VALUE');
}

function experimentInfo(workspace: string, value: unknown, askedId?: string): ResourceInfo {
  const experiment = jsonObject(value);
  if (!experiment) return missingExperiment(workspace, askedId);
  const id = typeof experiment.experiment_id === 'string' ? experiment.experiment_id : askedId;
  const name = typeof experiment.name === 'string' ? experiment.name : undefined;
  return { kind: 'experiment', workspace, id, name, exists: true, grants: grantsFromTags(tagsFrom(experiment.tags)) };
}
