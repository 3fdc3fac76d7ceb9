// The tracking and registry state behind test/helpers/mlflow-upstream.ts: experiments, runs,
// metrics, params, tags, registered models and versions, logged models and traces, answered the
// way MLflow 2.17.2 or 3.11.1 answers them (reference mlflow-http-surface.md; MLflow's
// handlers.py, sqlalchemy stores and validation.py where the reference says nothing):
// - both prefixes (/api, /ajax-api); GET reads the query string, or the JSON body when the query
//   string is empty; POST needs Content-Type application/json (see requireJsonContentType); PATCH
//   and DELETE read the JSON body whatever the Content-Type (§2.1, §11);
// - ids as MLflow makes them: experiments "0" (Default, see defaultExperiment), "1", "2"...
//   (strings), runs 32 hex digits, logged models "m-" and 32 hex digits, traces "tr-" and 32 hex
//   digits; model versions "1", "2"... per model, never reused;
// - errors {"error_code", "message"} with MLflow's statuses (§9); searches page with max_results
//   (each search's default and limit; experiments/search has no default) and next_page_token
//   (base64 of {"offset": n}, as MLflow's SearchUtils makes it), and take the simple filters the
//   tests use (`name = 'x'`, `name LIKE 'x-%'`, `params.k = 'v'`, `metrics.m < 1`...); empty lists
//   are left out of the JSON, as MLflow's protobuf JSON does;
// - what the answers hold, their shapes and the error messages are checked against the real
//   servers by test/mlflow/fake-matches-real.test.ts (docs/testing.md lists what it found);
// - tag keys (experiments, registered models, runs) and param keys are checked as validation.py
//   does, in requests and in the add* set-up helpers alike: a test cannot set up what MLflow would
//   refuse to hold;
// - runs/create stores user_id and the tags exactly as sent (§8), plus mlflow.runName;
// - version "2.17.2" has no experiments/delete-experiment-tag, no logged models and no /api/3.0
//   routes (they came in 3.0, §3): those answer Flask's HTML 404, as an unknown route does.
// Two leniencies kept for older tests, each off with an option: POST without a JSON Content-Type
// is accepted (requireJsonContentType), and the store starts empty with an empty experiments
// search answering {"experiments": []} (defaultExperiment).
import { randomBytes } from 'node:crypto';

export type MlflowVersion = '2.17.2' | '3.11.1';

export interface TrackingStoreOptions {
  /** Which MLflow to answer as (default 3.11.1): its routes and its validation messages. */
  version?: MlflowVersion;
  /** Answer a POST or PUT without `Content-Type: application/json` with 400, as MLflow does (§2.1, §11). */
  requireJsonContentType?: boolean;
  /**
   * Start as `mlflow server` does, with the Default experiment (id "0"), and leave an empty
   * experiments page out of the JSON. Off: an empty store whose empty search answers
   * {"experiments": []}, which older tests expect.
   */
  defaultExperiment?: boolean;
}

export interface Tag {
  key: string;
  value: string;
}

export interface StoredExperiment {
  experiment_id: string;
  name: string;
  artifact_location: string;
  lifecycle_stage: 'active' | 'deleted';
  creation_time: number;
  last_update_time: number;
  tags: Tag[];
}

export interface StoredRun {
  info: {
    run_id: string;
    run_uuid: string;
    run_name: string;
    experiment_id: string;
    user_id: string;
    status: string;
    start_time: number;
    end_time?: number;
    artifact_uri: string;
    lifecycle_stage: 'active' | 'deleted';
  };
  metrics: { key: string; value: number; timestamp: number; step: number }[];
  params: Tag[];
  tags: Tag[];
  /** runs/outputs (3.x): the logged models the run produced. */
  modelOutputs?: { model_id: string; step: number }[];
}

interface StoredModelVersion {
  name: string;
  version: string;
  source: string;
  run_id?: string;
  current_stage: string;
  status: string;
  creation_timestamp: number;
  last_updated_timestamp: number;
  description?: string;
  tags?: Tag[];
}

interface StoredModel {
  name: string;
  creation_timestamp: number;
  last_updated_timestamp: number;
  description?: string;
  tags: Tag[];
  versions: StoredModelVersion[];
  aliases: { alias: string; version: string }[];
  /** The highest version number ever given: MLflow never reuses one, even after a delete. */
  lastVersion: number;
}

interface StoredLoggedModel {
  model_id: string;
  experiment_id: string;
  name: string;
  creation_timestamp_ms: number;
  last_updated_timestamp_ms: number;
  status: string;
  artifact_uri: string;
  model_type?: string;
  source_run_id?: string;
  tags?: Tag[];
}

/** An answer to one API call: MLflow's JSON, or Flask's HTML 404 for a route this version lacks. */
interface Answer {
  status: number;
  contentType: string;
  body: string;
}

type Json = Record<string, unknown>;

class MlflowError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const notFound = (message: string) => new MlflowError(404, 'RESOURCE_DOES_NOT_EXIST', message);
const invalid = (message: string) => new MlflowError(400, 'INVALID_PARAMETER_VALUE', message);

const FLASK_404 = '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n';

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

// ---- validation.py ----

/** Python's json.dumps (ensure_ascii), as validation.invalid_value quotes a value. */
function pyJson(value: string): string {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Python's json.dumps with its default separators (", " and ": "). */
function pyDumps(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyDumps).join(', ')}]`;
  if (value && typeof value === 'object') return `{${Object.entries(value).map(([k, v]) => `${pyJson(k)}: ${pyDumps(v)}`).join(', ')}}`;
  return typeof value === 'string' ? pyJson(value) : JSON.stringify(value ?? null);
}

/** Python's posixpath.normpath. */
function pyNormpath(path: string): string {
  if (path === '') return '.';
  const leading = path.startsWith('//') && !path.startsWith('///') ? '//' : path.startsWith('/') ? '/' : '';
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..' || (!leading && (parts.length === 0 || parts.at(-1) === '..'))) parts.push(part);
    else if (parts.length) parts.pop();
  }
  return leading + parts.join('/') || '.';
}

/**
 * validation.py `_validate_tag_name` / `_validate_param_name` and the length limits (as on Linux,
 * where ":" is allowed, as it is since 2.16). Both versions word the message `Invalid value "k" for
 * parameter 'key' supplied: ...` (log-batch names the entry: `'tags[0].key'`), as the real servers
 * answer (test/mlflow/fake-matches-real.test.ts).
 */
function checkKey(_version: MlflowVersion, _kind: 'tag' | 'parameter', key: string, value?: string, valueLimit?: number, field = 'key'): void {
  const problem = (message: string) => invalid(`Invalid value ${pyJson(key)} for parameter '${field}' supplied: ${message}`);
  if (!/^[/\p{L}\p{N}_.\- :]*$/u.test(key)) {
    throw problem('Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).');
  }
  const normalised = pyNormpath(key);
  if (normalised !== key || normalised === '.' || normalised.startsWith('..') || normalised.startsWith('/')) {
    throw problem(`Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '${normalised}'`);
  }
  if ([...key].length > 250) throw invalid("'key' exceeds the maximum length of 250 characters");
  if (value !== undefined && valueLimit !== undefined && [...value].length > valueLimit) throw invalid(`'value' exceeds the maximum length of ${valueLimit} characters`);
}

/** Experiment and registered-model tags: keys as above, values at most 5000 characters. */
const TAG_VALUE_LIMIT = 5000;

// ---- paging (SearchUtils) ----

function pageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64');
}

function offsetOf(token: unknown): number {
  if (token === undefined || token === null || token === '') return 0;
  try {
    const offset = (JSON.parse(Buffer.from(String(token), 'base64').toString('utf8')) as { offset?: unknown }).offset;
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) return offset;
  } catch { /* below */ }
  throw invalid('Invalid page token, could not base64-decode');
}

/**
 * One page of `items`: `field` left out when empty, next_page_token only when more follow. A
 * `defaultMax` of 0 is a search whose max_results has no default (experiments: refused when
 * missing); `allowZero` answers max_results 0 with an empty page and a token, as the registered
 * models search does; `tokenWhenFull` gives a next_page_token after every full page, even the
 * last (2.17.2's runs search: the next page is then empty).
 */
function page(field: string, items: unknown[], message: Json, defaultMax: number, limit: number, allowZero = false, tokenWhenFull = false): Json {
  const raw = message.max_results;
  const max = raw === undefined || raw === null || raw === '' ? defaultMax : Number(raw);
  if (!Number.isInteger(max) || max < (allowZero ? 0 : 1)) throw invalid(`Invalid value ${String(raw ?? max)} for parameter 'max_results' supplied. It must be a positive integer`);
  if (max > limit) throw invalid(`Invalid value ${String(raw)} for parameter 'max_results' supplied. It must be at most ${limit}`);
  const offset = offsetOf(message.page_token);
  const answer = withList({}, field, items.slice(offset, offset + max));
  const more = tokenWhenFull ? offset + max <= items.length : offset + max < items.length;
  return more ? { ...answer, next_page_token: pageToken(offset + max) } : answer;
}

/** SQL LIKE (ILIKE without case) as a RegExp: % any run, _ one character. */
function likePattern(pattern: string, ignoreCase: boolean): RegExp {
  const body = [...pattern].map((c) => (c === '%' ? '.*' : c === '_' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`, ignoreCase ? 'is' : 's');
}

/** One comparison of a search filter: `name = 'x'`, `name LIKE 'x%'`, `tags.k != "v"`, `metrics.m < 0.3`... */
interface Clause {
  /** e.g. name, run_id, params.alpha, tags.k, metrics.loss, attributes.status */
  key: string;
  op: string;
  value: string | number;
}

/** `a = 'x' AND b LIKE 'y%'` (the subset of MLflow's filter grammar the tests use); undefined when it is not that. */
function parseFilter(filter: string): Clause[] | undefined {
  const clauses: Clause[] = [];
  const one = /^\s*((?:[A-Za-z_]+\.)?(?:`[^`]+`|"[^"]+"|[\w.\-:/ ]*?[\w\-:/]))\s*(=|!=|<>|<=|>=|<|>|LIKE|ILIKE)\s*('(?:[^']*)'|"(?:[^"]*)"|-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$/i;
  for (const part of filter.split(/\s+AND\s+/i)) {
    const match = one.exec(part);
    if (!match) return undefined;
    const key = match[1]!.replace(/[`"]/g, '');
    const raw = match[3]!;
    clauses.push({ key, op: match[2]!.toUpperCase(), value: /^['"]/.test(raw) ? raw.slice(1, -1) : Number(raw) });
  }
  return clauses;
}

function matches(actual: string | number | undefined, clause: Clause): boolean {
  if (actual === undefined) return false;
  const { op, value } = clause;
  if (op === 'LIKE' || op === 'ILIKE') return likePattern(String(value), op === 'ILIKE').test(String(actual));
  const [a, b] = typeof value === 'number' ? [Number(actual), value] : [String(actual), String(value)];
  switch (op) {
    case '=': return a === b;
    case '!=': case '<>': return a !== b;
    case '<': return a < b;
    case '<=': return a <= b;
    case '>': return a > b;
    default: return a >= b;
  }
}

/**
 * A registry or experiments search filter on plain attributes (`name = 'x'`, `name LIKE 'x-%'`,
 * `run_id = '...'`, `tags.k = 'v'`): which entries it keeps. Anything else is refused.
 */
function attributeFilter(filter: unknown, allowed: readonly string[]): ((get: (key: string) => string | undefined) => boolean) {
  if (typeof filter !== 'string' || filter.trim() === '') return () => true;
  const clauses = parseFilter(filter);
  if (!clauses || clauses.some((c) => !allowed.includes(c.key) && !c.key.startsWith('tags.'))) throw invalid(`Invalid filter '${filter}'`);
  return (get) => clauses.every((clause) => matches(get(clause.key), clause));
}

const tagValue = (tags: Tag[] | undefined, key: string) => tags?.find((tag) => tag.key === key)?.value;

/**
 * runs/search's filter: `params.k = 'v'`, `tags.k != 'v'`, `metrics.m < 0.3` (the latest value),
 * `attributes.status = 'FINISHED'` (or a bare attribute name), joined by AND.
 */
function runFilter(filter: unknown): (run: StoredRun, view: Json) => boolean {
  if (typeof filter !== 'string' || filter.trim() === '') return () => true;
  const clauses = parseFilter(filter);
  if (!clauses) throw invalid(`Invalid clause(s) in filter string: '${filter}'`);
  return (run, view) => clauses.every((clause) => {
    const [kind, ...rest] = clause.key.includes('.') ? clause.key.split('.') : ['attributes', clause.key];
    const name = rest.join('.');
    if (kind === 'params' || kind === 'param' || kind === 'parameters') return matches(tagValue(run.params, name), clause);
    if (kind === 'tags' || kind === 'tag') return matches(tagValue(run.tags, name), clause);
    if (kind === 'metrics' || kind === 'metric') return matches(((view.data as Json).metrics as StoredRun['metrics'] | undefined)?.find((m) => m.key === name)?.value, clause);
    const value = (run.info as unknown as Record<string, string | number | undefined>)[name];
    return matches(value, clause);
  });
}

// ---- request fields ----

const MISSING = (field: string) => `Missing value for required parameter '${field}'. See the API docs for more information about request parameters.`;

function required(message: Json, field: string): string {
  const value = message[field];
  if (value === undefined || value === null || value === '') throw invalid(MISSING(field));
  if (typeof value !== 'string') throw invalid(`Invalid value ${JSON.stringify(value)} for parameter '${field}' supplied: must be a string`);
  return value;
}

function tagsOf(value: unknown): Tag[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid('tags must be a list');
  return value.map((tag) => {
    const { key, value: v } = (tag ?? {}) as Json;
    if (typeof key !== 'string' || key === '') throw invalid('Missing value for required parameter \'key\'.');
    return { key, value: typeof v === 'string' ? v : String(v ?? '') };
  });
}

function setTag(tags: Tag[], key: string, value: string): void {
  const existing = tags.find((tag) => tag.key === key);
  if (existing) existing.value = value;
  else tags.push({ key, value });
}

/** MLflow's protobuf JSON leaves empty lists out. */
function withList<T extends Json>(object: T, field: string, list: unknown[]): T {
  return list.length ? { ...object, [field]: list } : object;
}

/** Routes of 3.x that 2.17.2 does not have (reference §3, "n/a" in the 2.17.2 column): Flask's 404 there. */
function onlyInV3(version: string, route: string): boolean {
  return version === '3.0'
    || route === '/mlflow/experiments/delete-experiment-tag'
    || route === '/mlflow/logged-models' || route.startsWith('/mlflow/logged-models/')
    || route === '/mlflow/runs/outputs' || route === '/mlflow/traces/link-to-run'
    || route === '/mlflow/webhooks' || route.startsWith('/mlflow/webhooks/');
}

export class TrackingStore {
  readonly version: MlflowVersion;
  private readonly requireJsonContentType: boolean;
  private readonly defaultExperiment: boolean;

  readonly experiments = new Map<string, StoredExperiment>();
  readonly runs = new Map<string, StoredRun>();
  readonly models = new Map<string, StoredModel>();
  readonly loggedModels = new Map<string, StoredLoggedModel>();
  readonly traces = new Map<string, { trace_id: string; experiment_id: string }>();
  private nextExperimentId = 1;
  private lastTime = 0;

  constructor(options: TrackingStoreOptions = {}) {
    this.version = options.version ?? '3.11.1';
    this.requireJsonContentType = options.requireJsonContentType ?? false;
    this.defaultExperiment = options.defaultExperiment ?? false;
    if (this.defaultExperiment) this.insertExperiment('0', 'Default', []);
  }

  /** Milliseconds, strictly increasing: no two things are created at the same time, so orders are stable. */
  private now(): number {
    this.lastTime = Math.max(Date.now(), this.lastTime + 1);
    return this.lastTime;
  }

  // ---- set-up helpers for tests: put things straight into the store (no gateway involved) ----

  addExperiment(name: string, tags: Tag[] = []): StoredExperiment {
    if (!name) throw invalid('Invalid experiment name: \'\'');
    for (const experiment of this.experiments.values()) {
      // The first line of sqlalchemy's error, as each version's store words it (the SQL follows).
      if (experiment.name === name) {
        throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', this.version === '2.17.2'
          ? `Experiment(name=${name}) already exists. Error: (raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block if this flush is occurring prematurely)`
          : `Experiment(name=${name}) already exists. Error: (sqlite3.IntegrityError) UNIQUE constraint failed: experiments.workspace, experiments.name`);
      }
    }
    for (const tag of tags) checkKey(this.version, 'tag', tag.key, tag.value, TAG_VALUE_LIMIT);
    return this.insertExperiment(String(this.nextExperimentId++), name, tags);
  }

  private insertExperiment(id: string, name: string, tags: Tag[]): StoredExperiment {
    const now = this.now();
    const experiment: StoredExperiment = { experiment_id: id, name, artifact_location: `mlflow-artifacts:/${id}`, lifecycle_stage: 'active', creation_time: now, last_update_time: now, tags: tags.map((tag) => ({ ...tag })) };
    this.experiments.set(id, experiment);
    return experiment;
  }

  addRun(experimentId: string, userId = 'unknown', tags: Tag[] = []): StoredRun {
    for (const tag of tags) checkKey(this.version, 'tag', tag.key);
    const id = hex(16);
    const run: StoredRun = {
      info: { run_id: id, run_uuid: id, run_name: `run-${id.slice(0, 6)}`, experiment_id: experimentId, user_id: userId, status: 'RUNNING', start_time: this.now(), artifact_uri: `mlflow-artifacts:/${experimentId}/${id}/artifacts`, lifecycle_stage: 'active' },
      metrics: [], params: [], tags: tags.map((tag) => ({ ...tag })),
    };
    this.runs.set(id, run);
    return run;
  }

  addModel(name: string, tags: Tag[] = []): StoredModel {
    if (!name) throw invalid("Missing value for required parameter 'name'.");
    if (this.models.has(name)) {
      throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', this.version === '2.17.2'
        ? `Registered Model (name=${name}) already exists. Error: (sqlite3.IntegrityError) UNIQUE constraint failed: registered_models.name`
        : `Registered Model (name=${name}) already exists.`);
    }
    for (const tag of tags) checkKey(this.version, 'tag', tag.key, tag.value, TAG_VALUE_LIMIT);
    const now = this.now();
    const model: StoredModel = { name, creation_timestamp: now, last_updated_timestamp: now, tags: tags.map((tag) => ({ ...tag })), versions: [], aliases: [], lastVersion: 0 };
    this.models.set(name, model);
    return model;
  }

  addModelVersion(name: string, source = 'mlflow-artifacts:/0/abc/artifacts/model', runId?: string): StoredModelVersion {
    const model = this.model(name);
    const now = this.now();
    const version: StoredModelVersion = { name, version: String(++model.lastVersion), source, ...(runId ? { run_id: runId } : {}), current_stage: 'None', status: 'READY', creation_timestamp: now, last_updated_timestamp: now, description: '', tags: [] };
    model.versions.push(version);
    model.last_updated_timestamp = now;
    return version;
  }

  addLoggedModel(experimentId: string, name = 'model', sourceRunId?: string): StoredLoggedModel {
    this.activeExperiment(experimentId);
    const id = `m-${hex(16)}`;
    const now = this.now();
    const model: StoredLoggedModel = { model_id: id, experiment_id: experimentId, name, creation_timestamp_ms: now, last_updated_timestamp_ms: now, status: 'LOGGED_MODEL_PENDING', artifact_uri: `mlflow-artifacts:/${experimentId}/models/${id}/artifacts`, model_type: '', ...(sourceRunId ? { source_run_id: sourceRunId } : {}), tags: [] };
    this.loggedModels.set(id, model);
    return model;
  }

  /**
   * Answers an MLflow API call, or undefined when the route is not one this store knows (the
   * upstream then answers as it did before). `route` is the path after /api/<v> or /ajax-api/<v>.
   */
  handle(method: string, version: string, route: string, query: URLSearchParams, body: string, contentType: string | undefined): Answer | undefined {
    if (this.version === '2.17.2' && onlyInV3(version, route)) return { status: 404, contentType: 'text/html; charset=utf-8', body: FLASK_404 };
    const handler = this.handlerFor(method, version, route);
    if (!handler) return undefined;
    const json = (status: number, value: unknown): Answer => ({ status, contentType: 'application/json', body: JSON.stringify(value) });
    try {
      return json(200, handler(this.messageOf(method, query, body, contentType)));
    } catch (err) {
      if (err instanceof MlflowError) return json(err.status, { error_code: err.code, message: err.message });
      throw err;
    }
  }

  /** MLflow's _get_request_message (reference §2.1). */
  private messageOf(method: string, query: URLSearchParams, body: string, contentType: string | undefined): Json {
    if (method === 'GET' && [...query.keys()].length > 0) {
      const message: Json = {};
      for (const key of new Set(query.keys())) {
        const values = query.getAll(key);
        message[key] = key.endsWith('_ids') || key === 'run_id' && values.length > 1 ? values : values[0];
      }
      return message;
    }
    if (this.requireJsonContentType && (method === 'POST' || method === 'PUT') && !/^application\/json\s*(;|$)/i.test(contentType ?? '')) {
      throw invalid(contentType === undefined ? 'Bad Request. Content-Type header is missing.' : "Bad Request. Content-Type must be one of ['application/json'].");
    }
    if (body.trim() === '') return {};
    let value: unknown;
    try {
      value = JSON.parse(body);
      if (typeof value === 'string') value = JSON.parse(value);
    } catch {
      throw new MlflowError(400, 'BAD_REQUEST', 'Malformed JSON body');
    }
    if (value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) throw invalid('the request body must be a JSON object');
    return value as Json;
  }

  private handlerFor(method: string, version: string, route: string): ((message: Json) => unknown) | undefined {
    const m = method === 'HEAD' ? 'GET' : method;
    if (version === '2.0') {
      switch (`${m} ${route}`) {
        case 'POST /mlflow/experiments/create': return (msg) => ({ experiment_id: this.addExperiment(required(msg, 'name'), tagsOf(msg.tags)).experiment_id });
        case 'GET /mlflow/experiments/get': return (msg) => ({ experiment: this.experimentView(this.experiment(required(msg, 'experiment_id'))) });
        case 'GET /mlflow/experiments/get-by-name': return (msg) => ({ experiment: this.experimentView(this.experimentNamed(required(msg, 'experiment_name'))) });
        case 'GET /mlflow/experiments/search':
        case 'POST /mlflow/experiments/search': return (msg) => this.searchExperiments(msg);
        case 'POST /mlflow/experiments/set-experiment-tag': return (msg) => this.setCarrierTag(this.activeExperiment(required(msg, 'experiment_id')).tags, msg);
        case 'POST /mlflow/experiments/delete-experiment-tag': return (msg) => this.deleteExperimentTag(msg);
        case 'POST /mlflow/experiments/update': return (msg) => this.renameExperiment(msg);
        case 'POST /mlflow/experiments/delete': return (msg) => this.setExperimentStage(msg, 'deleted');
        case 'POST /mlflow/experiments/restore': return (msg) => this.setExperimentStage(msg, 'active');
        case 'POST /mlflow/runs/create': return (msg) => this.createRun(msg);
        case 'GET /mlflow/runs/get': return (msg) => ({ run: this.runView(this.run(this.runIdOf(msg)), true) });
        case 'POST /mlflow/runs/update': return (msg) => this.updateRun(msg);
        case 'POST /mlflow/runs/delete': return (msg) => ((this.run(required(msg, 'run_id')).info.lifecycle_stage = 'deleted'), {});
        case 'POST /mlflow/runs/restore': return (msg) => ((this.run(required(msg, 'run_id')).info.lifecycle_stage = 'active'), {});
        case 'POST /mlflow/runs/log-metric': return (msg) => this.logMetric(this.run(this.runIdOf(msg)), msg);
        case 'POST /mlflow/runs/log-parameter': return (msg) => this.logParam(this.run(this.runIdOf(msg)), required(msg, 'key'), String(msg.value ?? ''));
        case 'POST /mlflow/runs/set-tag': return (msg) => this.setRunTag(this.run(this.runIdOf(msg)), required(msg, 'key'), String(msg.value ?? ''));
        case 'POST /mlflow/runs/delete-tag': return (msg) => this.deleteRunTag(msg);
        case 'POST /mlflow/runs/log-batch': return (msg) => this.logBatch(msg);
        case 'POST /mlflow/runs/search': return (msg) => this.searchRuns(msg);
        case 'GET /mlflow/metrics/get-history': return (msg) => this.metricHistory(msg);
        case 'GET /mlflow/artifacts/list': return (msg) => this.listRunArtifacts(msg);
        case 'POST /mlflow/registered-models/create': return (msg) => this.createModel(msg);
        case 'GET /mlflow/registered-models/get': return (msg) => ({ registered_model: this.modelView(this.model(required(msg, 'name'))) });
        case 'GET /mlflow/registered-models/search': return (msg) => this.searchModels(msg);
        case 'POST /mlflow/registered-models/rename': return (msg) => this.renameModel(msg);
        case 'PATCH /mlflow/registered-models/update': return (msg) => this.updateModel(msg);
        case 'DELETE /mlflow/registered-models/delete': return (msg) => (this.model(required(msg, 'name')), this.models.delete(required(msg, 'name')), {});
        case 'POST /mlflow/registered-models/set-tag': return (msg) => this.setCarrierTag(this.model(required(msg, 'name')).tags, msg);
        case 'DELETE /mlflow/registered-models/delete-tag': return (msg) => this.deleteModelTag(msg);
        case 'POST /mlflow/registered-models/alias': return (msg) => this.setAlias(msg);
        case 'GET /mlflow/registered-models/alias': return (msg) => this.versionByAlias(msg);
        case 'DELETE /mlflow/registered-models/alias': return (msg) => this.deleteAlias(msg);
        case 'POST /mlflow/model-versions/create': return (msg) => ({ model_version: this.versionView(this.addModelVersion(required(msg, 'name'), required(msg, 'source'), typeof msg.run_id === 'string' && msg.run_id !== '' ? msg.run_id : undefined)) });
        case 'GET /mlflow/model-versions/get': return (msg) => ({ model_version: this.versionView(this.modelVersion(msg)) });
        case 'PATCH /mlflow/model-versions/update': return (msg) => this.updateVersion(msg);
        case 'POST /mlflow/model-versions/set-tag': return (msg) => this.setVersionTag(msg);
        case 'DELETE /mlflow/model-versions/delete-tag': return (msg) => this.deleteVersionTag(msg);
        case 'GET /mlflow/model-versions/get-download-uri': return (msg) => ({ artifact_uri: this.modelVersion(msg).source });
        case 'GET /mlflow/model-versions/search': return (msg) => this.searchVersions(msg);
        case 'DELETE /mlflow/model-versions/delete': return (msg) => this.deleteVersion(msg);
        case 'POST /mlflow/logged-models': return (msg) => ({ model: this.loggedModelView(this.addLoggedModel(required(msg, 'experiment_id'), typeof msg.name === 'string' && msg.name !== '' ? msg.name : undefined, typeof msg.source_run_id === 'string' && msg.source_run_id !== '' ? msg.source_run_id : undefined)) });
        case 'POST /mlflow/logged-models/search': return (msg) => this.searchLoggedModels(msg);
        case 'POST /mlflow/runs/outputs': return (msg) => this.logOutputs(msg);
        case 'POST /mlflow/runs/log-model': return (msg) => this.logModel(msg);
      }
      const loggedModel = /^\/mlflow\/logged-models\/([^/]+)(\/tags)?$/.exec(route);
      if (loggedModel && !loggedModel[2] && m === 'GET') return () => ({ model: this.loggedModelView(this.loggedModel(decodeURIComponent(loggedModel[1]!))) });
      if (loggedModel && !loggedModel[2] && m === 'PATCH') return (msg) => this.finalizeLoggedModel(decodeURIComponent(loggedModel[1]!), msg);
      if (loggedModel && loggedModel[2] && m === 'PATCH') return (msg) => this.setLoggedModelTags(decodeURIComponent(loggedModel[1]!), msg);
    }
    if (version === '3.0') {
      if (`${m} ${route}` === 'POST /mlflow/traces') return (msg) => this.startTrace(msg);
      const traceRoute = /^\/mlflow\/traces\/([^/]+)$/.exec(route);
      if (traceRoute && m === 'GET' && traceRoute[1] !== 'get' && traceRoute[1] !== 'batchGet') return () => ({ trace: { trace_info: this.traceInfo(decodeURIComponent(traceRoute[1]!)) } });
    }
    return undefined;
  }

  // ---- experiments ----

  private experiment(id: string): StoredExperiment {
    const experiment = this.experiments.get(id);
    if (!experiment) throw notFound(`No Experiment with id=${id} exists`);
    return experiment;
  }

  /** sqlalchemy_store._check_experiment_is_active: writes to a deleted experiment are refused. */
  private activeExperiment(id: string): StoredExperiment {
    const experiment = this.experiment(id);
    if (experiment.lifecycle_stage !== 'active') throw invalid(`The experiment ${id} must be in the 'active' state. Current state is deleted.`);
    return experiment;
  }

  private experimentNamed(name: string): StoredExperiment {
    for (const experiment of this.experiments.values()) if (experiment.name === name) return experiment;
    throw notFound(`Could not find experiment with name '${name}'`);
  }

  private experimentView(experiment: StoredExperiment): Json {
    const { tags, ...rest } = experiment;
    return withList({ ...rest }, 'tags', tags.map((tag) => ({ ...tag })));
  }

  /** Default order: creation_time DESC, experiment_id ASC (sqlalchemy_store); `filter` on the name or tags. */
  private searchExperiments(message: Json): Json {
    const view = String(message.view_type ?? 'ACTIVE_ONLY');
    const all = [...this.experiments.values()].filter((e) => view === 'ALL' || (view === 'DELETED_ONLY' ? e.lifecycle_stage === 'deleted' : e.lifecycle_stage === 'active'));
    const keep = attributeFilter(message.filter, ['name', 'attributes.name', 'creation_time', 'last_update_time']);
    const found = all.filter((e) => keep((key) => (key.startsWith('tags.') ? tagValue(e.tags, key.slice(5)) : key.endsWith('name') ? e.name : String(e[key as 'creation_time']))));
    found.sort((a, b) => b.creation_time - a.creation_time || Number(a.experiment_id) - Number(b.experiment_id));
    // No default page size: MLflow refuses a search without max_results ("Invalid value 0").
    const answer = page('experiments', found.map((e) => this.experimentView(e)), message, 0, 50_000);
    return this.defaultExperiment || answer.experiments ? answer : { experiments: [], ...answer };
  }

  /** An experiment's or registered model's tag (set-experiment-tag, registered-models/set-tag). */
  private setCarrierTag(tags: Tag[], message: Json): Json {
    const key = required(message, 'key');
    const value = typeof message.value === 'string' ? message.value : '';
    checkKey(this.version, 'tag', key, value, TAG_VALUE_LIMIT);
    setTag(tags, key, value);
    return {};
  }

  private deleteExperimentTag(message: Json): Json {
    const experiment = this.activeExperiment(required(message, 'experiment_id'));
    const key = required(message, 'key');
    const index = experiment.tags.findIndex((tag) => tag.key === key);
    if (index === -1) throw notFound(`No tag with name: ${key} in experiment with id ${experiment.experiment_id}`);
    experiment.tags.splice(index, 1);
    return {};
  }

  private renameExperiment(message: Json): Json {
    const experiment = this.experiment(required(message, 'experiment_id'));
    if (experiment.lifecycle_stage !== 'active') throw new MlflowError(500, 'INVALID_STATE', 'Cannot rename a non-active experiment.');
    if (typeof message.new_name === 'string' && message.new_name !== '') experiment.name = message.new_name;
    experiment.last_update_time = this.now();
    return {};
  }

  /** Delete finds only an active experiment, restore only a deleted one; the runs follow (sqlalchemy_store). */
  private setExperimentStage(message: Json, stage: 'active' | 'deleted'): Json {
    const id = required(message, 'experiment_id');
    const experiment = this.experiments.get(id);
    if (!experiment || experiment.lifecycle_stage === stage) throw notFound(`No Experiment with id=${id} exists`);
    experiment.lifecycle_stage = stage;
    experiment.last_update_time = this.now();
    for (const run of this.runs.values()) if (run.info.experiment_id === id) run.info.lifecycle_stage = stage;
    return {};
  }

  // ---- runs ----

  private runIdOf(message: Json): string {
    return typeof message.run_id === 'string' && message.run_id !== '' ? message.run_id : required(message, 'run_uuid');
  }

  private run(id: string): StoredRun {
    const run = this.runs.get(id);
    if (!run) throw notFound(`Run with id=${id} not found`);
    return run;
  }

  /**
   * A run as MLflow answers it: `inputs: {}` (and in 3.x `outputs: {}`) on reads and searches; the
   * runs/create answer has no outputs, and in 2.17.2 no inputs either.
   */
  private runView(run: StoredRun, read = false): Json {
    const latest = new Map<string, StoredRun['metrics'][number]>();
    for (const metric of run.metrics) {
      const seen = latest.get(metric.key);
      if (!seen || metric.step > seen.step || (metric.step === seen.step && metric.timestamp >= seen.timestamp)) latest.set(metric.key, metric);
    }
    const data = withList(withList(withList({}, 'metrics', [...latest.values()]), 'params', run.params), 'tags', run.tags);
    const v3 = this.version !== '2.17.2';
    const outputs = withList({}, 'model_outputs', (run.modelOutputs ?? []).map((output) => ({ ...output })));
    return { info: { ...run.info }, data, ...(read || v3 ? { inputs: {} } : {}), ...(read && v3 ? { outputs } : {}) };
  }

  private createRun(message: Json): Json {
    const experiment = this.activeExperiment(required(message, 'experiment_id'));
    // Stored exactly as sent (reference §8): MLflow trusts the client's user_id and tags.
    const tags = tagsOf(message.tags);
    const run = this.addRun(experiment.experiment_id, typeof message.user_id === 'string' ? message.user_id : '', tags);
    const runName = typeof message.run_name === 'string' && message.run_name !== '' ? message.run_name : tags.find((tag) => tag.key === 'mlflow.runName')?.value ?? run.info.run_name;
    run.info.run_name = runName;
    if (typeof message.start_time === 'number' || typeof message.start_time === 'string') run.info.start_time = Number(message.start_time);
    setTag(run.tags, 'mlflow.runName', runName);
    return { run: this.runView(run) };
  }

  private updateRun(message: Json): Json {
    const run = this.run(this.runIdOf(message));
    if (typeof message.status === 'string') run.info.status = message.status;
    if (message.end_time !== undefined) run.info.end_time = Number(message.end_time);
    if (typeof message.run_name === 'string' && message.run_name !== '') run.info.run_name = message.run_name;
    return { run_info: { ...run.info } };
  }

  private logMetric(run: StoredRun, message: Json): Json {
    const key = required(message, 'key');
    if (message.value === undefined) throw invalid(MISSING('value'));
    run.metrics.push({ key, value: Number(message.value), timestamp: Number(message.timestamp ?? Date.now()), step: Number(message.step ?? 0) });
    return {};
  }

  private logParam(run: StoredRun, key: string, value: string): Json {
    checkKey(this.version, 'parameter', key);
    this.checkParamUnchanged(run, [{ key, value }], false);
    setTag(run.params, key, value);
    return {};
  }

  /** A param, once logged, keeps its value: logging another is refused (logging the same again is not). */
  private checkParamUnchanged(run: StoredRun, params: Tag[], batch: boolean): void {
    const changed = params.flatMap((param) => {
      const old = run.params.find((p) => p.key === param.key);
      return old && old.value !== param.value ? [{ key: param.key, old_value: old.value, new_value: param.value }] : [];
    });
    if (changed.length === 0) return;
    const { key, old_value: oldValue, new_value: newValue } = changed[0]!;
    throw invalid(batch
      ? `Changing param values is not allowed. Params were already logged='${JSON.stringify(changed).replace(/"/g, "'")}' for run ID='${run.info.run_id}'.`
      : `Changing param values is not allowed. Param with key='${key}' was already logged with value='${oldValue}' for run ID='${run.info.run_id}'. Attempted logging new value '${newValue}'.`);
  }

  private setRunTag(run: StoredRun, key: string, value: string): Json {
    checkKey(this.version, 'tag', key);
    setTag(run.tags, key, value);
    return {};
  }

  private deleteRunTag(message: Json): Json {
    const run = this.run(required(message, 'run_id'));
    const key = required(message, 'key');
    const index = run.tags.findIndex((tag) => tag.key === key);
    if (index === -1) throw notFound(`No tag with name: ${key} in run with id ${run.info.run_id}`);
    run.tags.splice(index, 1);
    return {};
  }

  private logBatch(message: Json): Json {
    const run = this.run(required(message, 'run_id'));
    const params = tagsOf(message.params);
    const tags = tagsOf(message.tags);
    params.forEach((param, i) => checkKey(this.version, 'parameter', param.key, undefined, undefined, `params[${i}].key`));
    tags.forEach((tag, i) => checkKey(this.version, 'tag', tag.key, undefined, undefined, `tags[${i}].key`));
    this.checkParamUnchanged(run, params, true);
    for (const metric of (message.metrics as Json[] | undefined) ?? []) this.logMetric(run, metric);
    for (const param of params) setTag(run.params, param.key, param.value);
    for (const tag of tags) setTag(run.tags, tag.key, tag.value);
    return {};
  }

  private searchRuns(message: Json): Json {
    const ids = Array.isArray(message.experiment_ids) ? message.experiment_ids.map(String) : [];
    const keep = runFilter(message.filter);
    const runs = [...this.runs.values()].filter((run) => ids.includes(run.info.experiment_id) && run.info.lifecycle_stage === 'active' && keep(run, this.runView(run)));
    runs.sort((a, b) => b.info.start_time - a.info.start_time || (a.info.run_id < b.info.run_id ? -1 : 1));
    return page('runs', runs.map((run) => this.runView(run, true)), message, 1000, 50_000, false, this.version === '2.17.2');
  }

  /**
   * A missing run has no history (an empty answer, not an error). 3.11.1 pages it: without
   * max_results the first page is empty and only a next_page_token comes back (the client always
   * sends max_results).
   */
  private metricHistory(message: Json): Json {
    const run = this.runs.get(this.runIdOf(message));
    const key = required(message, 'metric_key');
    if (this.version !== '2.17.2' && (message.max_results === undefined || message.max_results === '')) return run?.metrics.some((m) => m.key === key) ? { next_page_token: pageToken(0) } : {};
    return withList({}, 'metrics', run ? run.metrics.filter((metric) => metric.key === key) : []);
  }

  /** runs/log-model: the model's MLmodel dict appended to the run's mlflow.log-model.history tag. */
  private logModel(message: Json): Json {
    const run = this.run(required(message, 'run_id'));
    let model: Json;
    try {
      model = JSON.parse(required(message, 'model_json')) as Json;
    } catch {
      throw invalid('Malformed model info. \n Failed to parse model_json');
    }
    const missing = ['artifact_path', 'flavors', 'run_id', 'utc_time_created'].filter((field) => model[field] === undefined);
    if (missing.length) throw invalid(`Model json is missing mandatory fields: {${missing.map((field) => `'${field}'`).join(', ')}}`);
    const { run_id: runId, artifact_path: artifactPath, utc_time_created: created, flavors, model_uuid: uuid, ...rest } = model;
    const history = JSON.parse(tagValue(run.tags, 'mlflow.log-model.history') ?? '[]') as unknown[];
    history.push({ run_id: runId, artifact_path: artifactPath, utc_time_created: created, model_uuid: uuid ?? null, flavors, ...rest });
    setTag(run.tags, 'mlflow.log-model.history', pyDumps(history));
    return {};
  }

  /** runs/outputs (3.x): the run's logged models, shown under its `outputs`. */
  private logOutputs(message: Json): Json {
    const run = this.run(required(message, 'run_id'));
    for (const model of (Array.isArray(message.models) ? message.models : []) as Json[]) {
      run.modelOutputs ??= [];
      run.modelOutputs.push({ model_id: String(model.model_id ?? ''), step: Number(model.step ?? 0) });
    }
    return {};
  }

  /** Lister for the run's artifacts (the upstream's artifact store sets it; empty without one). */
  artifactLister: (path: string) => { path: string; is_dir: boolean; file_size?: number }[] = () => [];

  /** artifacts/list: the run's root_uri and the entries one level under `path`, named from the run's root. */
  private listRunArtifacts(message: Json): Json {
    const run = this.run(this.runIdOf(message));
    const root = run.info.artifact_uri.replace(/^mlflow-artifacts:\//, '');
    const under = typeof message.path === 'string' ? message.path.replace(/^\/+|\/+$/g, '') : '';
    const files = this.artifactLister(under ? `${root}/${under}` : root).map((file) => ({ ...file, path: under ? `${under}/${file.path}` : file.path }));
    return withList({ root_uri: run.info.artifact_uri }, 'files', files);
  }

  // ---- registered models and versions ----

  private model(name: string): StoredModel {
    if (!name) throw invalid("Missing value for required parameter 'name'.");
    const model = this.models.get(name);
    if (!model) throw notFound(`Registered Model with name=${name} not found`);
    return model;
  }

  /** latest_versions entries: no tags or aliases (MLflow lists them without). */
  private latestVersionView(version: StoredModelVersion): Json {
    const { tags: _tags, ...view } = this.versionView(version);
    delete view.aliases;
    return view;
  }

  private modelView(model: StoredModel): Json {
    const latest = model.versions.at(-1);
    let view: Json = { name: model.name, creation_timestamp: model.creation_timestamp, last_updated_timestamp: model.last_updated_timestamp };
    if (model.description) view.description = model.description;
    view = withList(view, 'latest_versions', latest ? [this.latestVersionView(latest)] : []);
    view = withList(view, 'tags', model.tags.map((tag) => ({ ...tag })));
    return withList(view, 'aliases', model.aliases);
  }

  /** A model version as MLflow answers it: empty description and run_link, run_id "" when none, its tags and aliases. */
  private versionView(version: StoredModelVersion): Json {
    const { tags, ...rest } = version;
    const aliases = this.models.get(version.name)?.aliases.filter((a) => a.version === version.version).map((a) => a.alias) ?? [];
    const view = { description: '', ...rest, run_id: version.run_id ?? '', run_link: '' };
    return withList(withList(view, 'tags', (tags ?? []).map((tag) => ({ ...tag }))), 'aliases', aliases);
  }

  private createModel(message: Json): Json {
    const model = this.addModel(required(message, 'name'), tagsOf(message.tags));
    if (typeof message.description === 'string') model.description = message.description;
    return { registered_model: this.modelView(model) };
  }

  /**
   * Name ascending (sqlalchemy: string order, not the locale's); default 100 a page, at most 1000;
   * max_results 0 answers an empty page with a next_page_token.
   */
  private searchModels(message: Json): Json {
    const keep = attributeFilter(message.filter, ['name']);
    const models = [...this.models.values()].filter((model) => keep((key) => (key === 'name' ? model.name : tagValue(model.tags, key.slice(5))))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return page('registered_models', models.map((model) => this.modelView(model)), message, 100, 1000, true);
  }

  private renameModel(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const newName = required(message, 'new_name');
    if (this.models.has(newName)) throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Registered Model (name=${newName}) already exists.`);
    this.models.delete(model.name);
    model.name = newName;
    for (const version of model.versions) version.name = newName;
    model.last_updated_timestamp = this.now();
    this.models.set(newName, model);
    return { registered_model: this.modelView(model) };
  }

  private updateModel(message: Json): Json {
    const model = this.model(required(message, 'name'));
    model.description = String(message.description ?? '');
    model.last_updated_timestamp = this.now();
    return { registered_model: this.modelView(model) };
  }

  /** A missing key is no error here (model registry sqlalchemy_store), unlike an experiment's. */
  private deleteModelTag(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const key = required(message, 'key');
    const index = model.tags.findIndex((tag) => tag.key === key);
    if (index !== -1) model.tags.splice(index, 1);
    return {};
  }

  private modelVersion(message: Json): StoredModelVersion {
    const model = this.model(required(message, 'name'));
    const wanted = required(message, 'version');
    if (!/^-?\d+$/.test(wanted.trim())) throw invalid(this.version === '2.17.2' ? `Model version must be an integer, got '${wanted}'` : `Parameter 'version' must be an integer, got '${wanted}'.`);
    const version = model.versions.find((v) => v.version === wanted);
    if (!version) throw notFound(`Model Version (name=${model.name}, version=${wanted}) not found`);
    return version;
  }

  /**
   * Last updated first, then name ascending, version descending (as the real servers order them);
   * filter on name, run_id, source or tags; default 10000 a page, at most 200000. The entries carry
   * no aliases (model-versions/get does).
   */
  private searchVersions(message: Json): Json {
    const keep = attributeFilter(message.filter, ['name', 'run_id', 'source', 'version_number']);
    const versions = [...this.models.values()].flatMap((model) => model.versions)
      .filter((v) => keep((key) => (key.startsWith('tags.') ? tagValue(v.tags, key.slice(5)) : key === 'version_number' ? v.version : (v as unknown as Record<string, string | undefined>)[key])));
    versions.sort((a, b) => b.last_updated_timestamp - a.last_updated_timestamp || (a.name < b.name ? -1 : a.name > b.name ? 1 : Number(b.version) - Number(a.version)));
    return page('model_versions', versions.map((v) => { const { aliases: _aliases, ...view } = this.versionView(v); return view; }), message, 10_000, 200_000);
  }

  private updateVersion(message: Json): Json {
    const version = this.modelVersion(message);
    if (typeof message.description === 'string') version.description = message.description;
    version.last_updated_timestamp = this.now();
    return { model_version: this.versionView(version) };
  }

  private setVersionTag(message: Json): Json {
    const version = this.modelVersion(message);
    const key = required(message, 'key');
    const value = typeof message.value === 'string' ? message.value : '';
    checkKey(this.version, 'tag', key, value, TAG_VALUE_LIMIT);
    version.tags ??= [];
    setTag(version.tags, key, value);
    return {};
  }

  private deleteVersionTag(message: Json): Json {
    const version = this.modelVersion(message);
    const key = required(message, 'key');
    version.tags = (version.tags ?? []).filter((tag) => tag.key !== key);
    return {};
  }

  private deleteAlias(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const alias = required(message, 'alias');
    model.aliases = model.aliases.filter((a) => a.alias !== alias);
    return {};
  }

  private deleteVersion(message: Json): Json {
    const version = this.modelVersion(message);
    const model = this.model(version.name);
    model.versions.splice(model.versions.indexOf(version), 1);
    model.aliases = model.aliases.filter((a) => a.version !== version.version);
    return {};
  }

  private setAlias(message: Json): Json {
    const version = this.modelVersion(message);
    const model = this.model(version.name);
    const alias = required(message, 'alias');
    model.aliases = model.aliases.filter((a) => a.alias !== alias);
    model.aliases.push({ alias, version: version.version });
    return {};
  }

  private versionByAlias(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const alias = required(message, 'alias');
    const found = model.aliases.find((a) => a.alias === alias);
    if (!found) throw invalid(`Registered model alias ${alias} not found.`);
    return { model_version: this.versionView(model.versions.find((v) => v.version === found.version)!) };
  }

  // ---- logged models, traces (3.x) ----

  private loggedModel(id: string): StoredLoggedModel {
    const model = this.loggedModels.get(id);
    if (!model) throw notFound(`Logged model with ID '${id}' not found.`);
    return model;
  }

  /** {info, data: {}} as MLflow answers a logged model; an empty tags list left out. */
  private loggedModelView(model: StoredLoggedModel): Json {
    const { tags, ...info } = model;
    return { info: withList({ model_type: '', ...info }, 'tags', (tags ?? []).map((tag) => ({ ...tag }))), data: {} };
  }

  private finalizeLoggedModel(id: string, message: Json): Json {
    const model = this.loggedModel(id);
    model.status = required(message, 'status');
    model.last_updated_timestamp_ms = this.now();
    return { model: this.loggedModelView(model) };
  }

  private setLoggedModelTags(id: string, message: Json): Json {
    const model = this.loggedModel(id);
    model.tags ??= [];
    for (const tag of tagsOf(message.tags)) setTag(model.tags, tag.key, tag.value);
    return {};
  }

  private searchLoggedModels(message: Json): Json {
    const ids = Array.isArray(message.experiment_ids) ? message.experiment_ids.map(String) : [];
    if (ids.length === 0) throw invalid("Missing value for required parameter 'experiment_ids' (at least one) in the JSON body");
    const models = [...this.loggedModels.values()].filter((model) => ids.includes(model.experiment_id));
    return page('models', models.map((model) => this.loggedModelView(model)), message, 50, 100);
  }

  private startTrace(message: Json): Json {
    const info = ((message.trace as Json | undefined)?.trace_info ?? {}) as Json;
    const experimentId = String((((info.trace_location as Json | undefined)?.mlflow_experiment as Json | undefined)?.experiment_id) ?? '');
    this.experiment(experimentId);
    const traceId = typeof info.trace_id === 'string' && info.trace_id !== '' ? info.trace_id : `tr-${hex(16)}`;
    this.traces.set(traceId, { trace_id: traceId, experiment_id: experimentId });
    return { trace: { trace_info: this.traceInfo(traceId) } };
  }

  private traceInfo(id: string): Json {
    const trace = this.traces.get(id);
    if (!trace) throw notFound(`Trace with ID ${id} is not found.`);
    return { trace_id: id, trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: trace.experiment_id } }, state: 'OK' };
  }
}
