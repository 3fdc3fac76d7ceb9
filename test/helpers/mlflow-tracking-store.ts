// The tracking and registry state behind test/helpers/mlflow-upstream.ts: experiments, runs,
// metrics, params, tags, registered models and versions, logged models and traces, answered the
// way MLflow 2.17/3.x answers them (reference mlflow-http-surface.md):
// - both prefixes (/api, /ajax-api); GET reads the query string, or the JSON body when the query
//   string is empty; POST needs Content-Type application/json; PATCH and DELETE read the JSON
//   body whatever the Content-Type (§2.1, §11);
// - ids as MLflow makes them: experiments "1", "2"... (strings), runs 32 hex digits, logged models
//   "m-" and 32 hex digits, traces "tr-" and 32 hex digits; model versions "1", "2"... per model;
// - errors {"error_code", "message"} with MLflow's statuses (§9); searches page with max_results
//   and next_page_token (base64 of {"offset": n}, as MLflow's SearchUtils makes it);
// - runs/create stores user_id and the tags exactly as sent (§8), plus mlflow.runName.
// One difference kept for older tests: an empty experiments search answers {"experiments": []}
// (MLflow leaves empty lists out).
import { randomBytes } from 'node:crypto';

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
}

export interface StoredModel {
  name: string;
  creation_timestamp: number;
  last_updated_timestamp: number;
  description?: string;
  tags: Tag[];
  versions: { name: string; version: string; source?: string; run_id?: string; current_stage: string; status: string; creation_timestamp: number }[];
  aliases: { alias: string; version: string }[];
}

export interface Answer {
  status: number;
  json: unknown;
}

type Json = Record<string, unknown>;

class MlflowError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const notFound = (message: string) => new MlflowError(404, 'RESOURCE_DOES_NOT_EXIST', message);
const invalid = (message: string) => new MlflowError(400, 'INVALID_PARAMETER_VALUE', message);

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

function pageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64');
}

function offsetOf(token: unknown): number {
  if (typeof token !== 'string' || token === '') return 0;
  try {
    const offset = (JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { offset?: unknown }).offset;
    if (typeof offset === 'number' && offset >= 0) return offset;
  } catch { /* below */ }
  throw invalid(`Invalid page token, could not base64-decode`);
}

function page<T>(items: T[], message: Json, defaultMax: number): { items: T[]; next?: string } {
  const max = message.max_results === undefined ? defaultMax : Number(message.max_results);
  if (!Number.isInteger(max) || max < 1) throw invalid(`Invalid value for parameter 'max_results' supplied.`);
  const offset = offsetOf(message.page_token);
  const slice = items.slice(offset, offset + max);
  return { items: slice, next: offset + max < items.length ? pageToken(offset + max) : undefined };
}

function required(message: Json, field: string): string {
  const value = message[field];
  if (value === undefined || value === null || value === '') throw invalid(`Missing value for required parameter '${field}'. See the API docs for more information about request parameters.`);
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

export class TrackingStore {
  /**
   * MLflow answers a POST or PUT without `Content-Type: application/json` with 400. Off unless
   * asked for: older tests post `{}` without it.
   */
  constructor(private readonly requireJsonContentType = false) {}

  readonly experiments = new Map<string, StoredExperiment>();
  readonly runs = new Map<string, StoredRun>();
  readonly models = new Map<string, StoredModel>();
  readonly loggedModels = new Map<string, { model_id: string; experiment_id: string; name: string }>();
  readonly traces = new Map<string, { trace_id: string; experiment_id: string }>();
  private nextExperimentId = 1;

  /** For tests: put an experiment straight into the store (no gateway involved). */
  addExperiment(name: string, tags: Tag[] = []): StoredExperiment {
    const id = String(this.nextExperimentId++);
    const now = Date.now();
    const experiment: StoredExperiment = { experiment_id: id, name, artifact_location: `mlflow-artifacts:/${id}`, lifecycle_stage: 'active', creation_time: now, last_update_time: now, tags: [...tags] };
    this.experiments.set(id, experiment);
    return experiment;
  }

  addRun(experimentId: string, userId = 'unknown', tags: Tag[] = []): StoredRun {
    const id = hex(16);
    const run: StoredRun = {
      info: { run_id: id, run_uuid: id, run_name: `run-${id.slice(0, 6)}`, experiment_id: experimentId, user_id: userId, status: 'RUNNING', start_time: Date.now(), artifact_uri: `mlflow-artifacts:/${experimentId}/${id}/artifacts`, lifecycle_stage: 'active' },
      metrics: [], params: [], tags: [...tags],
    };
    this.runs.set(id, run);
    return run;
  }

  addModel(name: string, tags: Tag[] = []): StoredModel {
    const now = Date.now();
    const model: StoredModel = { name, creation_timestamp: now, last_updated_timestamp: now, tags: [...tags], versions: [], aliases: [] };
    this.models.set(name, model);
    return model;
  }

  /**
   * Answers an MLflow API call, or undefined when the route is not one this store knows (the
   * upstream then answers as it did before). `route` is the path after /api/<v> or /ajax-api/<v>.
   */
  handle(method: string, version: string, route: string, query: URLSearchParams, body: string, contentType: string | undefined): Answer | undefined {
    const handler = this.handlerFor(method, version, route);
    if (!handler) return undefined;
    try {
      return { status: 200, json: handler(this.messageOf(method, query, body, contentType)) };
    } catch (err) {
      if (err instanceof MlflowError) return { status: err.status, json: { error_code: err.code, message: err.message } };
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
      throw invalid(contentType === undefined ? 'Bad Request. Content-Type header is missing.' : "Bad Request. Content-Type must be one of ['application/json']");
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
        case 'POST /mlflow/experiments/create': return (msg) => this.createExperiment(msg);
        case 'GET /mlflow/experiments/get': return (msg) => ({ experiment: this.experimentView(this.experiment(required(msg, 'experiment_id'))) });
        case 'GET /mlflow/experiments/get-by-name': return (msg) => ({ experiment: this.experimentView(this.experimentNamed(required(msg, 'experiment_name'))) });
        case 'GET /mlflow/experiments/search':
        case 'POST /mlflow/experiments/search': return (msg) => this.searchExperiments(msg);
        case 'POST /mlflow/experiments/set-experiment-tag': return (msg) => (setTag(this.experiment(required(msg, 'experiment_id')).tags, required(msg, 'key'), String(msg.value ?? '')), {});
        case 'POST /mlflow/experiments/delete-experiment-tag': return (msg) => this.deleteExperimentTag(msg);
        case 'POST /mlflow/experiments/update': return (msg) => this.renameExperiment(msg);
        case 'POST /mlflow/experiments/delete': return (msg) => ((this.experiment(required(msg, 'experiment_id')).lifecycle_stage = 'deleted'), {});
        case 'POST /mlflow/experiments/restore': return (msg) => ((this.experiment(required(msg, 'experiment_id')).lifecycle_stage = 'active'), {});
        case 'POST /mlflow/runs/create': return (msg) => this.createRun(msg);
        case 'GET /mlflow/runs/get': return (msg) => ({ run: this.runView(this.run(this.runIdOf(msg))) });
        case 'POST /mlflow/runs/update': return (msg) => this.updateRun(msg);
        case 'POST /mlflow/runs/delete': return (msg) => ((this.run(required(msg, 'run_id')).info.lifecycle_stage = 'deleted'), {});
        case 'POST /mlflow/runs/restore': return (msg) => ((this.run(required(msg, 'run_id')).info.lifecycle_stage = 'active'), {});
        case 'POST /mlflow/runs/log-metric': return (msg) => this.logMetric(this.run(this.runIdOf(msg)), msg);
        case 'POST /mlflow/runs/log-parameter': return (msg) => (setTag(this.run(this.runIdOf(msg)).params, required(msg, 'key'), String(msg.value ?? '')), {});
        case 'POST /mlflow/runs/set-tag': return (msg) => (setTag(this.run(this.runIdOf(msg)).tags, required(msg, 'key'), String(msg.value ?? '')), {});
        case 'POST /mlflow/runs/delete-tag': return (msg) => this.deleteRunTag(msg);
        case 'POST /mlflow/runs/log-batch': return (msg) => this.logBatch(msg);
        case 'POST /mlflow/runs/search': return (msg) => this.searchRuns(msg);
        case 'GET /mlflow/metrics/get-history': return (msg) => this.metricHistory(msg);
        case 'GET /mlflow/artifacts/list': return (msg) => ({ root_uri: this.run(this.runIdOf(msg)).info.artifact_uri });
        case 'POST /mlflow/registered-models/create': return (msg) => this.createModel(msg);
        case 'GET /mlflow/registered-models/get': return (msg) => ({ registered_model: this.modelView(this.model(required(msg, 'name'))) });
        case 'GET /mlflow/registered-models/search': return (msg) => this.searchModels(msg);
        case 'POST /mlflow/registered-models/rename': return (msg) => this.renameModel(msg);
        case 'PATCH /mlflow/registered-models/update': return (msg) => ((this.model(required(msg, 'name')).description = String(msg.description ?? '')), { registered_model: this.modelView(this.model(required(msg, 'name'))) });
        case 'DELETE /mlflow/registered-models/delete': return (msg) => (this.model(required(msg, 'name')), this.models.delete(required(msg, 'name')), {});
        case 'POST /mlflow/registered-models/set-tag': return (msg) => (setTag(this.model(required(msg, 'name')).tags, required(msg, 'key'), String(msg.value ?? '')), {});
        case 'DELETE /mlflow/registered-models/delete-tag': return (msg) => this.deleteModelTag(msg);
        case 'POST /mlflow/registered-models/alias': return (msg) => this.setAlias(msg);
        case 'GET /mlflow/registered-models/alias': return (msg) => this.versionByAlias(msg);
        case 'POST /mlflow/model-versions/create': return (msg) => this.createVersion(msg);
        case 'GET /mlflow/model-versions/get': return (msg) => ({ model_version: this.version(msg) });
        case 'GET /mlflow/model-versions/search': return () => withList({}, 'model_versions', [...this.models.values()].flatMap((model) => model.versions));
        case 'DELETE /mlflow/model-versions/delete': return (msg) => this.deleteVersion(msg);
        case 'POST /mlflow/logged-models': return (msg) => this.createLoggedModel(msg);
      }
      const loggedModel = /^\/mlflow\/logged-models\/([^/]+)$/.exec(route);
      if (loggedModel && m === 'GET') return () => ({ model: { info: this.loggedModel(decodeURIComponent(loggedModel[1]!)) } });
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

  private experimentNamed(name: string): StoredExperiment {
    for (const experiment of this.experiments.values()) if (experiment.name === name) return experiment;
    throw notFound(`Could not find experiment with name '${name}'`);
  }

  private experimentView(experiment: StoredExperiment): Json {
    const { tags, ...rest } = experiment;
    return withList({ ...rest }, 'tags', tags.map((tag) => ({ ...tag })));
  }

  private createExperiment(message: Json): Json {
    const name = required(message, 'name');
    for (const experiment of this.experiments.values()) {
      if (experiment.name === name) throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Experiment(name=${name}) already exists. Error: (raised as a result of Query-invoked autoflush)`);
    }
    return { experiment_id: this.addExperiment(name, tagsOf(message.tags)).experiment_id };
  }

  private searchExperiments(message: Json): Json {
    const view = String(message.view_type ?? 'ACTIVE_ONLY');
    const all = [...this.experiments.values()].filter((e) => view === 'ALL' || (view === 'DELETED_ONLY' ? e.lifecycle_stage === 'deleted' : e.lifecycle_stage === 'active'));
    all.sort((a, b) => b.creation_time - a.creation_time || Number(b.experiment_id) - Number(a.experiment_id));
    const { items, next } = page(all, message, 1000);
    return { experiments: items.map((e) => this.experimentView(e)), ...(next ? { next_page_token: next } : {}) };
  }

  private deleteExperimentTag(message: Json): Json {
    const experiment = this.experiment(required(message, 'experiment_id'));
    const key = required(message, 'key');
    const index = experiment.tags.findIndex((tag) => tag.key === key);
    if (index === -1) throw notFound(`No tag with name: ${key} in experiment with id ${experiment.experiment_id}`);
    experiment.tags.splice(index, 1);
    return {};
  }

  private renameExperiment(message: Json): Json {
    const experiment = this.experiment(required(message, 'experiment_id'));
    if (typeof message.new_name === 'string' && message.new_name !== '') experiment.name = message.new_name;
    return {};
  }

  // ---- runs ----

  private runIdOf(message: Json): string {
    return typeof message.run_id === 'string' && message.run_id !== '' ? message.run_id : required(message, 'run_uuid');
  }

  private run(id: string): StoredRun {
    const run = this.runs.get(id);
    if (!run) throw notFound(`Run '${id}' not found`);
    return run;
  }

  private runView(run: StoredRun): Json {
    const latest = new Map<string, StoredRun['metrics'][number]>();
    for (const metric of run.metrics) {
      const seen = latest.get(metric.key);
      if (!seen || metric.step > seen.step || (metric.step === seen.step && metric.timestamp >= seen.timestamp)) latest.set(metric.key, metric);
    }
    const data = withList(withList(withList({}, 'metrics', [...latest.values()]), 'params', run.params), 'tags', run.tags);
    return { info: { ...run.info }, data, inputs: {} };
  }

  private createRun(message: Json): Json {
    const experiment = this.experiment(required(message, 'experiment_id'));
    if (experiment.lifecycle_stage !== 'active') throw invalid(`The experiment ${experiment.experiment_id} must be in the 'active' state. Current state is deleted.`);
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
    if (message.value === undefined) throw invalid("Missing value for required parameter 'value'.");
    run.metrics.push({ key, value: Number(message.value), timestamp: Number(message.timestamp ?? Date.now()), step: Number(message.step ?? 0) });
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
    for (const metric of (message.metrics as Json[] | undefined) ?? []) this.logMetric(run, metric);
    for (const param of tagsOf(message.params)) setTag(run.params, param.key, param.value);
    for (const tag of tagsOf(message.tags)) setTag(run.tags, tag.key, tag.value);
    return {};
  }

  private searchRuns(message: Json): Json {
    const ids = Array.isArray(message.experiment_ids) ? message.experiment_ids.map(String) : [];
    const runs = [...this.runs.values()].filter((run) => ids.includes(run.info.experiment_id) && run.info.lifecycle_stage === 'active');
    runs.sort((a, b) => b.info.start_time - a.info.start_time);
    const { items, next } = page(runs, message, 1000);
    return { ...withList({}, 'runs', items.map((run) => this.runView(run))), ...(next ? { next_page_token: next } : {}) };
  }

  private metricHistory(message: Json): Json {
    const run = this.run(this.runIdOf(message));
    const key = required(message, 'metric_key');
    return withList({}, 'metrics', run.metrics.filter((metric) => metric.key === key));
  }

  // ---- registered models ----

  private model(name: string): StoredModel {
    const model = this.models.get(name);
    if (!model) throw notFound(`Registered Model with name=${name} not found`);
    return model;
  }

  private modelView(model: StoredModel): Json {
    const latest = model.versions.at(-1);
    let view: Json = { name: model.name, creation_timestamp: model.creation_timestamp, last_updated_timestamp: model.last_updated_timestamp };
    if (model.description) view.description = model.description;
    view = withList(view, 'latest_versions', latest ? [latest] : []);
    view = withList(view, 'tags', model.tags.map((tag) => ({ ...tag })));
    return withList(view, 'aliases', model.aliases);
  }

  private createModel(message: Json): Json {
    const name = required(message, 'name');
    if (this.models.has(name)) throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Registered Model (name=${name}) already exists.`);
    const model = this.addModel(name, tagsOf(message.tags));
    if (typeof message.description === 'string') model.description = message.description;
    return { registered_model: this.modelView(model) };
  }

  private searchModels(message: Json): Json {
    const { items, next } = page([...this.models.values()].sort((a, b) => a.name.localeCompare(b.name)), message, 100);
    return { ...withList({}, 'registered_models', items.map((model) => this.modelView(model))), ...(next ? { next_page_token: next } : {}) };
  }

  private renameModel(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const newName = required(message, 'new_name');
    if (this.models.has(newName)) throw new MlflowError(400, 'RESOURCE_ALREADY_EXISTS', `Registered Model (name=${newName}) already exists.`);
    this.models.delete(model.name);
    model.name = newName;
    for (const version of model.versions) version.name = newName;
    this.models.set(newName, model);
    return { registered_model: this.modelView(model) };
  }

  private deleteModelTag(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const key = required(message, 'key');
    const index = model.tags.findIndex((tag) => tag.key === key);
    if (index === -1) throw notFound(`Registered model tag with name=${model.name}, key=${key} not found`);
    model.tags.splice(index, 1);
    return {};
  }

  private createVersion(message: Json): Json {
    const model = this.model(required(message, 'name'));
    const version = {
      name: model.name, version: String(model.versions.length + 1), source: typeof message.source === 'string' ? message.source : undefined,
      run_id: typeof message.run_id === 'string' ? message.run_id : undefined, current_stage: 'None', status: 'READY', creation_timestamp: Date.now(),
    };
    model.versions.push(version);
    return { model_version: version };
  }

  private version(message: Json): StoredModel['versions'][number] {
    const model = this.model(required(message, 'name'));
    const wanted = required(message, 'version');
    const version = model.versions.find((v) => v.version === wanted);
    if (!version) throw notFound(`Model Version (name=${model.name}, version=${wanted}) not found`);
    return version;
  }

  private deleteVersion(message: Json): Json {
    const version = this.version(message);
    const model = this.model(version.name);
    model.versions.splice(model.versions.indexOf(version), 1);
    return {};
  }

  private setAlias(message: Json): Json {
    const version = this.version(message);
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
    return { model_version: model.versions.find((v) => v.version === found.version) };
  }

  // ---- logged models, traces (3.x) ----

  private createLoggedModel(message: Json): Json {
    const experiment = this.experiment(required(message, 'experiment_id'));
    const info = { model_id: `m-${hex(16)}`, experiment_id: experiment.experiment_id, name: typeof message.name === 'string' ? message.name : 'model' };
    this.loggedModels.set(info.model_id, info);
    return { model: { info } };
  }

  private loggedModel(id: string): Json {
    const model = this.loggedModels.get(id);
    if (!model) throw notFound(`Logged model with ID '${id}' not found.`);
    return { ...model, artifact_uri: `mlflow-artifacts:/${model.experiment_id}/models/${id}/artifacts` };
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
