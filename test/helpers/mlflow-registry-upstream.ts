// An upstream that answers like an MLflow tracking server on the routes that hold mlgate's grants
// (experiment and registered-model tags) and the searches the gateway filters. Faithful to the
// reference (mlflow-http-surface.md) where the tests depend on it:
// - both prefixes (/api/2.0, /ajax-api/2.0); GET reads the query string, or the JSON body when the
//   query string is empty; POST needs Content-Type application/json; DELETE and PATCH read the JSON
//   body whatever the Content-Type;
// - errors as {"error_code", "message"} with MLflow's statuses; an unknown route is Flask's HTML 404;
// - ids are strings; tags are [{key, value}]; empty lists are left out of the JSON, as MLflow's
//   protobuf-to-JSON does; pages carry next_page_token (base64 JSON {"offset": n}, as MLflow's
//   SearchUtils makes it) until the last;
// - tag keys are checked as MLflow's validation.py does;
// - version "2.17.2" has no experiments/delete-experiment-tag and no logged models (3.0+).
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { posix } from 'node:path';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Tag {
  key: string;
  value: string;
}

interface Experiment {
  experiment_id: string;
  name: string;
  artifact_location: string;
  lifecycle_stage: 'active' | 'deleted';
  creation_time: number;
  last_update_time: number;
  tags: Tag[];
}

interface RegisteredModel {
  name: string;
  creation_timestamp: number;
  last_updated_timestamp: number;
  tags: Tag[];
}

interface ModelVersion {
  name: string;
  version: string;
  creation_timestamp: number;
  source: string;
  run_id?: string;
  current_stage: string;
  status: string;
}

interface LoggedModel {
  info: { model_id: string; experiment_id: string; name: string; creation_timestamp_ms: number; status: string; artifact_uri: string };
}

export interface RegistryUpstreamOptions {
  version?: '2.17.2' | '3.11.1';
}

export interface RegistryUpstream {
  url: string;
  version: string;
  requests: RecordedRequest[];
  /** Direct access to the store, as a test's "MLflow already holds this" set-up. */
  createExperiment(name: string, tags?: Tag[]): string;
  deleteExperiment(id: string): void;
  createModel(name: string, tags?: Tag[]): void;
  createModelVersion(name: string): string;
  createLoggedModel(experimentId: string, name: string): string;
  experimentTags(id: string): Tag[];
  modelTags(name: string): Tag[];
  close(): Promise<void>;
}

class MlflowError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const invalid = (message: string) => new MlflowError(400, 'INVALID_PARAMETER_VALUE', message);
const missing = (message: string) => new MlflowError(404, 'RESOURCE_DOES_NOT_EXIST', message);
const required = (name: string) => invalid(`Missing value for required parameter '${name}'. See the API docs for more information about request parameters.`);

const FLASK_404 = '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n';

// validation.py: _VALID_PARAM_AND_METRIC_NAMES (3.x adds ":"), path_not_unique.
function checkTagKey(key: string, v3: boolean): void {
  const allowed = v3 ? /^[/\p{L}\p{N}_.\- :]*$/u : /^[/\p{L}\p{N}_.\- ]*$/u;
  if (!allowed.test(key)) {
    throw invalid(`Invalid value "${key}" for parameter 'key' supplied. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ),${v3 ? ' colon(:)' : ''} and slashes (/).`);
  }
  const normalised = posix.normalize(key).replace(/(.)\/+$/, '$1');
  if (normalised !== key || key === '.' || key.startsWith('..') || key.startsWith('/')) {
    throw invalid(`Invalid value "${key}" for parameter 'key' supplied. Names cannot resolve to a different path when normalized.`);
  }
  if (key.length > 250) throw invalid(`'key' exceeds the maximum length of 250 characters`);
}

function pageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64');
}

function offsetOf(token: unknown): number {
  if (token === undefined || token === '') return 0;
  try {
    const parsed = JSON.parse(Buffer.from(String(token), 'base64').toString('utf8')) as { offset?: unknown };
    if (typeof parsed.offset === 'number' && Number.isInteger(parsed.offset) && parsed.offset >= 0) return parsed.offset;
  } catch {
    // falls through
  }
  throw invalid('Invalid page token, could not base64-decode');
}

function maxResultsOf(value: unknown, fallback: number, limit: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > limit) throw invalid(`Invalid value ${String(value)} for parameter 'max_results' supplied. It must be a positive integer at most ${limit}`);
  return n;
}

/** A page of `all`, MLflow-style: the list left out when empty, next_page_token only when more follow. */
function page<T>(field: string, all: T[], message: Record<string, unknown>, fallback: number, limit: number): Record<string, unknown> {
  const offset = offsetOf(message.page_token);
  const max = maxResultsOf(message.max_results, fallback, limit);
  const slice = all.slice(offset, offset + max);
  const answer: Record<string, unknown> = {};
  if (slice.length) answer[field] = slice;
  if (offset + max < all.length) answer.next_page_token = pageToken(offset + max);
  return answer;
}

/** Tags as MLflow serialises them: an empty list left out. */
function withTags<T extends { tags: Tag[] }>(entity: T): Omit<T, 'tags'> & { tags?: Tag[] } {
  const { tags, ...rest } = entity;
  return tags.length ? { ...rest, tags: tags.map((tag) => ({ ...tag })) } : rest;
}

function setTag(tags: Tag[], key: string, value: string): void {
  const existing = tags.find((tag) => tag.key === key);
  if (existing) existing.value = value;
  else tags.push({ key, value });
}

/** `name = 'x'` or `name='x'` (what the tests use of MLflow's filter grammar). */
function nameFilter(filter: unknown): string | undefined {
  if (typeof filter !== 'string' || filter.trim() === '') return undefined;
  const match = /^\s*name\s*=\s*(['"])(.*)\1\s*$/.exec(filter);
  if (!match) throw invalid(`Invalid filter '${filter}'`);
  return match[2];
}

export async function startRegistryUpstream(options: RegistryUpstreamOptions = {}): Promise<RegistryUpstream> {
  const version = options.version ?? '3.11.1';
  const v3 = version.startsWith('3.');
  const requests: RecordedRequest[] = [];
  const experiments = new Map<string, Experiment>();
  const models = new Map<string, RegisteredModel>();
  const versions: ModelVersion[] = [];
  const loggedModels: LoggedModel[] = [];
  let nextExperimentId = 0;
  let clock = 1_700_000_000_000;

  function createExperiment(name: string, tags: Tag[] = []): string {
    if ([...experiments.values()].some((e) => e.name === name)) {
      throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Experiment(name=${name}) already exists. Error: (raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block if this flush is occurring prematurely)`);
    }
    for (const tag of tags) checkTagKey(tag.key, v3);
    const id = String(nextExperimentId++);
    const now = clock++;
    experiments.set(id, { experiment_id: id, name, artifact_location: `mlflow-artifacts:/${id}`, lifecycle_stage: 'active', creation_time: now, last_update_time: now, tags: tags.map((t) => ({ ...t })) });
    return id;
  }
  createExperiment('Default');

  function experimentById(id: unknown): Experiment {
    if (typeof id !== 'string' || id === '') throw required('experiment_id');
    const experiment = experiments.get(id);
    if (!experiment) throw missing(`No Experiment with id=${id} exists`);
    return experiment;
  }

  function activeExperiment(id: unknown): Experiment {
    const experiment = experimentById(id);
    if (experiment.lifecycle_stage !== 'active') throw new MlflowError(500, 'INVALID_STATE', `The experiment ${experiment.experiment_id} must be in the 'active' state. Current state is deleted.`);
    return experiment;
  }

  function createModel(name: string, tags: Tag[] = []): void {
    if (!name) throw required('name');
    if (models.has(name)) throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Registered Model (name=${name}) already exists.`);
    for (const tag of tags) checkTagKey(tag.key, v3);
    const now = clock++;
    models.set(name, { name, creation_timestamp: now, last_updated_timestamp: now, tags: tags.map((t) => ({ ...t })) });
  }

  function modelByName(name: unknown): RegisteredModel {
    if (typeof name !== 'string' || name === '') throw required('name');
    const model = models.get(name);
    if (!model) throw missing(`Registered Model with name=${name} not found`);
    return model;
  }

  function createModelVersion(name: string, source = 'mlflow-artifacts:/0/abc/artifacts/model', runId?: string): string {
    modelByName(name);
    const version = String(versions.filter((v) => v.name === name).length + 1);
    versions.push({ name, version, creation_timestamp: clock++, source, ...(runId ? { run_id: runId } : {}), current_stage: 'None', status: 'READY' });
    return version;
  }

  function createLoggedModel(experimentId: string, name: string): string {
    activeExperiment(experimentId);
    const modelId = `m-${(loggedModels.length + 1).toString(16).padStart(32, '0')}`;
    loggedModels.push({ info: { model_id: modelId, experiment_id: experimentId, name, creation_timestamp_ms: clock++, status: 'LOGGED_MODEL_READY', artifact_uri: `mlflow-artifacts:/${experimentId}/models/${modelId}/artifacts` } });
    return modelId;
  }

  const str = (message: Record<string, unknown>, name: string): string => {
    const value = message[name];
    if (value === undefined || value === null || value === '') throw required(name);
    if (typeof value !== 'string') throw invalid(`Invalid value ${JSON.stringify(value)} for parameter '${name}' supplied: it must be a string`);
    return value;
  };
  const tagsIn = (message: Record<string, unknown>): Tag[] => {
    const tags = message.tags;
    if (tags === undefined) return [];
    if (!Array.isArray(tags)) throw invalid(`Invalid value for parameter 'tags' supplied`);
    return tags.map((tag: { key?: unknown; value?: unknown }) => ({ key: String(tag.key ?? ''), value: String(tag.value ?? '') }));
  };

  type Handler = (message: Record<string, unknown>) => unknown;
  const routes = new Map<string, Handler>([
    ['POST experiments/create', (m) => ({ experiment_id: createExperiment(str(m, 'name'), tagsIn(m)) })],
    ['GET experiments/get', (m) => ({ experiment: withTags(experimentById(m.experiment_id)) })],
    ['GET experiments/get-by-name', (m) => {
      const name = str(m, 'experiment_name');
      const experiment = [...experiments.values()].find((e) => e.name === name);
      if (!experiment) throw missing(`Could not find experiment with name '${name}'`);
      return { experiment: withTags(experiment) };
    }],
    ['POST experiments/search', (m) => searchExperiments(m)],
    ['GET experiments/search', (m) => searchExperiments(m)],
    ['POST experiments/delete', (m) => {
      const experiment = activeExperiment(m.experiment_id);
      experiment.lifecycle_stage = 'deleted';
      return {};
    }],
    ['POST experiments/set-experiment-tag', (m) => {
      const experiment = activeExperiment(m.experiment_id);
      const key = str(m, 'key');
      checkTagKey(key, v3);
      setTag(experiment.tags, key, typeof m.value === 'string' ? m.value : '');
      return {};
    }],
    ...(v3 ? [['POST experiments/delete-experiment-tag', (m: Record<string, unknown>) => {
      const experiment = activeExperiment(m.experiment_id);
      const key = str(m, 'key');
      const index = experiment.tags.findIndex((tag) => tag.key === key);
      if (index < 0) throw missing(`No tag with name: ${key} in experiment with id ${experiment.experiment_id}`);
      experiment.tags.splice(index, 1);
      return {};
    }] as const] : []),
    ['POST registered-models/create', (m) => {
      const name = str(m, 'name');
      createModel(name, tagsIn(m));
      return { registered_model: withTags(models.get(name)!) };
    }],
    ['GET registered-models/get', (m) => ({ registered_model: withTags(modelByName(m.name)) })],
    ['GET registered-models/search', (m) => {
      const name = nameFilter(m.filter);
      const all = [...models.values()].filter((model) => name === undefined || model.name === name).sort((a, b) => (a.name < b.name ? -1 : 1)).map(withTags);
      return page('registered_models', all, m, 100, 1000);
    }],
    ['POST registered-models/set-tag', (m) => {
      const model = modelByName(m.name);
      const key = str(m, 'key');
      checkTagKey(key, v3);
      setTag(model.tags, key, typeof m.value === 'string' ? m.value : '');
      return {};
    }],
    ['DELETE registered-models/delete-tag', (m) => {
      const model = modelByName(m.name);
      const key = str(m, 'key');
      const index = model.tags.findIndex((tag) => tag.key === key);
      if (index >= 0) model.tags.splice(index, 1);
      return {};
    }],
    ['POST model-versions/create', (m) => {
      const name = str(m, 'name');
      const versionNumber = createModelVersion(name, str(m, 'source'), typeof m.run_id === 'string' ? m.run_id : undefined);
      return { model_version: versions.find((v) => v.name === name && v.version === versionNumber) };
    }],
    ['GET model-versions/search', (m) => {
      const name = nameFilter(m.filter);
      return page('model_versions', versions.filter((v) => name === undefined || v.name === name), m, 10_000, 200_000);
    }],
    ...(v3 ? [
      ['POST logged-models', (m: Record<string, unknown>) => {
        const id = createLoggedModel(str(m, 'experiment_id'), typeof m.name === 'string' ? m.name : 'model');
        return { model: loggedModels.find((lm) => lm.info.model_id === id) };
      }] as const,
      ['POST logged-models/search', (m: Record<string, unknown>) => {
        const ids = Array.isArray(m.experiment_ids) ? m.experiment_ids.map(String) : [];
        if (ids.length === 0) throw invalid('At least one experiment ID must be specified');
        return page('models', loggedModels.filter((lm) => ids.includes(lm.info.experiment_id)), m, 50, 100);
      }] as const,
    ] : []),
  ]);

  function searchExperiments(m: Record<string, unknown>): unknown {
    const viewType = m.view_type ?? 'ACTIVE_ONLY';
    const all = [...experiments.values()]
      .filter((e) => viewType === 'ALL' || (viewType === 'DELETED_ONLY' ? e.lifecycle_stage === 'deleted' : e.lifecycle_stage === 'active'))
      .sort((a, b) => b.creation_time - a.creation_time)
      .map(withTags);
    return page('experiments', all, m, 1000, 50_000);
  }

  const send = (res: ServerResponse, status: number, body: string, type: string) => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://upstream');
      if (url.pathname === '/health') return send(res, 200, 'OK', 'text/plain');
      const route = /^\/(?:ajax-)?api\/2\.0\/mlflow\/(.+)$/.exec(url.pathname)?.[1];
      const handler = route === undefined ? undefined : routes.get(`${req.method} ${route}`);
      if (!handler) return send(res, 404, FLASK_404, 'text/html; charset=utf-8');
      try {
        const answer = handler(messageOf(req, url, body));
        send(res, 200, JSON.stringify(answer), 'application/json');
      } catch (err) {
        const error = err instanceof MlflowError ? err : new MlflowError(500, 'INTERNAL_ERROR', String(err));
        send(res, error.status, JSON.stringify({ error_code: error.code, message: error.message }), 'application/json');
      }
    });
  });

  /** handlers._get_request_message: GET takes the query (or the JSON body if the query is empty); POST needs JSON; DELETE/PATCH read JSON regardless. */
  function messageOf(req: IncomingMessage, url: URL, body: string): Record<string, unknown> {
    if (req.method === 'GET' && [...url.searchParams.keys()].length > 0) {
      const message: Record<string, unknown> = {};
      for (const key of new Set(url.searchParams.keys())) {
        const values = url.searchParams.getAll(key);
        message[key] = key.endsWith('_ids') ? values : values[0];
      }
      return message;
    }
    if (req.method === 'POST' || req.method === 'PUT') {
      const type = req.headers['content-type'];
      if (type === undefined) throw invalid('Bad Request. Content-Type header is missing.');
      if (!/^application\/json\s*(;|$)/i.test(type)) throw invalid("Bad Request. Content-Type must be one of ['application/json'].");
    }
    if (body.trim() === '') return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
      if (typeof parsed === 'string') parsed = JSON.parse(parsed);
    } catch {
      throw new MlflowError(400, 'BAD_REQUEST', 'Malformed JSON');
    }
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    version,
    requests,
    createExperiment,
    deleteExperiment(id) {
      activeExperiment(id).lifecycle_stage = 'deleted';
    },
    createModel,
    createModelVersion: (name) => createModelVersion(name),
    createLoggedModel,
    experimentTags: (id) => experimentById(id).tags.map((t) => ({ ...t })),
    modelTags: (name) => modelByName(name).tags.map((t) => ({ ...t })),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
