// Where each parameter is read, by MLflow's own rules (reference §2.1, §11): the gateway must check
// exactly the id the handler will act on.
import { describe, expect, it } from 'vitest';
import { canonicalizeTarget } from '../src/authz/canonical-path.ts';
import {
  extractResources, hasQueryParams, MAX_IDS_PER_REQUEST, parseRequestJson,
  type ExtractedResources, type ExtractionError, type ResourceRef,
} from '../src/authz/extract-params.ts';
import { matchRule, needsRequestBody } from '../src/authz/route-table.ts';

const RUN_A = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const RUN_B = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';

interface Call {
  body?: unknown;
  headers?: Record<string, string | string[]>;
  /** The request's MLflow workspace (default: the default one). */
  workspace?: string;
}

/** Runs a request through canonicalisation, matching and extraction, reading the body only when asked to. */
function extract(method: string, target: string, call: Call = {}): ExtractedResources | ExtractionError {
  const canonical = canonicalizeTarget(target);
  if (!canonical.ok) throw new Error(canonical.reason);
  const match = matchRule(method, canonical.path);
  if (!match) throw new Error(`no route for ${method} ${target}`);
  const query = new URLSearchParams(canonical.query);
  let body: unknown;
  if (needsRequestBody(match.rule, hasQueryParams(query))) {
    const parsed = parseRequestJson(call.body === undefined ? '' : typeof call.body === 'string' ? call.body : JSON.stringify(call.body));
    if (!parsed.ok) return parsed;
    body = parsed.value;
  }
  return extractResources(match.rule, { query, body, pathParams: match.params, headers: call.headers, workspace: call.workspace ?? 'default' });
}

function refs(result: ExtractedResources | ExtractionError): [ResourceRef, string][] {
  if (!result.ok) throw new Error(`expected resources, got ${result.status} ${result.message}`);
  return result.checks.map((check) => [check.ref, check.level]);
}

function refusal(result: ExtractedResources | ExtractionError): string {
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result.checks)}`);
  expect(result.status).toBe(400);
  expect(result.code).toBe('INVALID_PARAMETER_VALUE');
  return result.message;
}

const run = (id: string) => ({ kind: 'run', id });
const experiment = (id: string) => ({ kind: 'experiment', id });

describe('GET: the query string, or the JSON body when the query string is empty', () => {
  it('reads the query string and ignores the body (a non-empty query wins: reference §11)', () => {
    expect(refs(extract('GET', '/api/2.0/mlflow/experiments/get?experiment_id=0', { body: { experiment_id: '1' } }))).toEqual([[experiment('0'), 'READ']]);
  });

  it('reads a JSON body when there is no query string, whatever the Content-Type', () => {
    expect(refs(extract('GET', '/api/2.0/mlflow/experiments/get', { body: { experiment_id: '1' } }))).toEqual([[experiment('1'), 'READ']]);
    expect(refs(extract('GET', '/api/2.0/mlflow/experiments/get?', { body: { experiment_id: '1' } }))).toEqual([[experiment('1'), 'READ']]);
  });

  it('a query string with other parameters is still the query string: the body is not consulted', () => {
    expect(refusal(extract('GET', '/api/2.0/mlflow/runs/get?foo=1', { body: { run_id: RUN_A } }))).toMatch(/run_id/);
  });

  it('an empty query ("?&") counts as none, "?=" as one, as in werkzeug', () => {
    expect(hasQueryParams(new URLSearchParams('&&'))).toBe(false);
    expect(hasQueryParams(new URLSearchParams('='))).toBe(true);
    expect(refs(extract('GET', '/api/2.0/mlflow/experiments/get?&&', { body: { experiment_id: '7' } }))).toEqual([[experiment('7'), 'READ']]);
  });

  it('without either, says where the parameter was expected', () => {
    expect(refusal(extract('GET', '/api/2.0/mlflow/experiments/get'))).toBe("Missing value for required parameter 'experiment_id' in the query string (or, without one, the JSON body)");
  });

  it('takes the first value of a repeated scalar key, and every value of a list', () => {
    expect(refs(extract('GET', '/api/2.0/mlflow/experiments/get?experiment_id=1&experiment_id=2'))).toEqual([[experiment('1'), 'READ']]);
    expect(refs(extract('GET', `/api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=${RUN_A}&run_ids=${RUN_B}&metric_key=loss`)))
      .toEqual([[run(RUN_A), 'READ'], [run(RUN_B), 'READ']]);
  });

  it('Flask routes read request.args only: no body, and their own key names', () => {
    expect(refs(extract('GET', `/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=${RUN_A}&run_id=${RUN_B}&metric_key=loss`)))
      .toEqual([[run(RUN_A), 'READ'], [run(RUN_B), 'READ']]);
    expect(refusal(extract('GET', '/ajax-api/2.0/mlflow/metrics/get-history-bulk', { body: { run_id: [RUN_A] } }))).toMatch(/'run_id' \(at least one\) in the query string/);
    expect(refs(extract('GET', `/get-artifact?path=model/MLmodel&run_uuid=${RUN_A}`))).toEqual([[run(RUN_A), 'READ']]);
    expect(refs(extract('POST', `/ajax-api/2.0/mlflow/upload-artifact?run_uuid=${RUN_A}&path=x.txt`))).toEqual([[run(RUN_A), 'EDIT']]);
  });
});

describe('POST, PUT, PATCH, DELETE: the JSON body, never the query string', () => {
  it('DELETE acts on the body, not the query (reference §11: deletes m1, not m2)', () => {
    expect(refs(extract('DELETE', '/api/2.0/mlflow/registered-models/delete?name=m2', { body: { name: 'm1' } })))
      .toEqual([[{ kind: 'registered-model', name: 'm1' }, 'MANAGE']]);
  });

  it('PATCH likewise', () => {
    expect(refs(extract('PATCH', '/api/2.0/mlflow/model-versions/update?name=theirs', { body: { name: 'mine', version: '1' } })))
      .toEqual([[{ kind: 'registered-model', name: 'mine' }, 'EDIT']]);
  });

  it('POST ignores a query string naming another run', () => {
    expect(refs(extract('POST', `/api/2.0/mlflow/runs/log-metric?run_id=${RUN_B}`, { body: { run_id: RUN_A, key: 'm', value: 1, timestamp: 1 } })))
      .toEqual([[run(RUN_A), 'EDIT']]);
  });

  it('a missing body is an empty message, as in MLflow', () => {
    expect(refusal(extract('DELETE', '/api/2.0/mlflow/registered-models/delete'))).toBe("Missing value for required parameter 'name' in the JSON body");
  });

  it('the lead must hand over the body when the rule reads it', () => {
    const { rule, params } = matchRule('POST', '/api/2.0/mlflow/runs/log-metric')!;
    expect(() => extractResources(rule, { query: new URLSearchParams(), body: undefined, pathParams: params, workspace: 'default' })).toThrow(/reads the JSON body/);
  });
});

describe('run_id, or the legacy run_uuid, as the handler reads them', () => {
  const logMetric = (body: unknown) => extract('POST', '/api/2.0/mlflow/runs/log-metric', { body });

  it('falls back to run_uuid when run_id is absent, empty or null', () => {
    expect(refs(logMetric({ run_uuid: RUN_B }))).toEqual([[run(RUN_B), 'EDIT']]);
    expect(refs(logMetric({ run_id: '', run_uuid: RUN_B }))).toEqual([[run(RUN_B), 'EDIT']]);
    expect(refs(logMetric({ run_id: null, run_uuid: RUN_B }))).toEqual([[run(RUN_B), 'EDIT']]);
  });

  it('takes run_uuid when run_id is empty, and refuses the two naming different runs', () => {
    expect(refs(logMetric({ run_id: RUN_A, run_uuid: RUN_A }))).toEqual([[run(RUN_A), 'EDIT']]);
    expect(refusal(logMetric({ run_id: RUN_A, run_uuid: RUN_B }))).toMatch(/'run_id' and 'run_uuid' name different resources/);
    expect(refusal(extract('GET', `/api/2.0/mlflow/runs/get?run_uuid=${RUN_B}&run_id=${RUN_A}`))).toMatch(/name different resources/);
    expect(refs(extract('GET', `/api/2.0/mlflow/runs/get?run_id=&run_uuid=${RUN_B}`))).toEqual([[run(RUN_B), 'READ']]);
  });

  it('does not fall back where the handler reads run_id only', () => {
    expect(refusal(extract('POST', '/api/2.0/mlflow/runs/delete', { body: { run_uuid: RUN_A } }))).toMatch(/'run_id'/);
    expect(refusal(extract('POST', '/api/2.0/mlflow/runs/log-batch', { body: { run_uuid: RUN_A } }))).toMatch(/'run_id'/);
  });

  it('refuses camelCase spellings, which MLflow\'s protobuf parser takes for the same field', () => {
    expect(refusal(logMetric({ runId: RUN_A, run_uuid: RUN_B }))).toBe('the body spells run_id as runId; use run_id');
    expect(refusal(logMetric({ run_id: RUN_A, runId: RUN_B }))).toMatch(/runId/);
    expect(refusal(logMetric({ runUuid: RUN_B }))).toMatch(/runUuid/);
    expect(refusal(extract('POST', '/api/2.0/mlflow/runs/search', { body: { experimentIds: ['1'] } }))).toMatch(/experimentIds/);
  });

  it('refuses what is not a run id', () => {
    expect(refusal(logMetric({ run_id: 7 }))).toMatch(/must hold a string/);
    expect(refusal(logMetric({ run_id: '../x' }))).toMatch(/not a run id/);
  });
});

describe('lists', () => {
  const search = (body: unknown) => extract('POST', '/api/2.0/mlflow/runs/search', { body });

  it('checks every listed experiment, each once', () => {
    expect(refs(search({ experiment_ids: ['1', '2', '1'] }))).toEqual([[experiment('1'), 'READ'], [experiment('2'), 'READ']]);
  });

  it('wants at least one, arrays of strings, and not too many', () => {
    expect(refusal(search({ experiment_ids: [] }))).toMatch(/at least one/);
    expect(refusal(search({}))).toMatch(/at least one/);
    expect(refusal(search({ experiment_ids: '1' }))).toMatch(/must be a JSON array/);
    expect(refusal(search({ experiment_ids: [1] }))).toMatch(/must hold strings/);
    expect(refusal(search({ experiment_ids: Array.from({ length: MAX_IDS_PER_REQUEST + 1 }, (_, i) => String(i)) }))).toMatch(/at most 1000/);
  });

  it('takes experiment ids as MLflow\'s stores mean them: plain decimal integers', () => {
    for (const id of ['+1', ' 1', '01', '1_0', '1.0', '', '\u0661']) expect(search({ experiment_ids: [id] }).ok, JSON.stringify(id)).toBe(false);
  });

  it('walks into lists of objects (v3 trace search locations)', () => {
    const loc = (id: string) => ({ type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: id } });
    expect(refs(extract('POST', '/api/3.0/mlflow/traces/search', { body: { locations: [loc('3'), loc('4')] } })))
      .toEqual([[experiment('3'), 'READ'], [experiment('4'), 'READ']]);
    expect(refusal(extract('POST', '/api/3.0/mlflow/traces/search', { body: { locations: [loc('3'), { type: 'UC_SCHEMA', uc_schema: {} }] } })))
      .toBe('an element of locations has no mlflow_experiment.experiment_id');
  });

  it('checks every resource a multi-resource route names, each at its level', () => {
    expect(refs(extract('POST', '/api/2.0/mlflow/traces/link-to-run', { body: { run_id: RUN_A, trace_ids: ['tr-1', 'tr-2', 'tr-1'] } })))
      .toEqual([[run(RUN_A), 'EDIT'], [{ kind: 'trace', id: 'tr-1' }, 'EDIT'], [{ kind: 'trace', id: 'tr-2' }, 'EDIT']]);
    expect(refs(extract('POST', '/api/2.0/mlflow/traces/link-prompts', { body: { trace_id: 'tr-1', prompt_versions: [{ name: 'summarise', version: '2' }] } })))
      .toEqual([[{ kind: 'trace', id: 'tr-1' }, 'EDIT'], [{ kind: 'registered-model', name: 'summarise' }, 'READ']]);
    expect(refs(extract('POST', '/api/3.0/mlflow/datasets/d-1/add-experiments', { body: { experiment_ids: ['5'] } })))
      .toEqual([[{ kind: 'dataset', id: 'd-1' }, 'EDIT'], [experiment('5'), 'EDIT']]);
  });

  it('keeps the highest level when one resource is named twice', () => {
    expect(refs(extract('POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'iris', source: `runs:/${RUN_A}/model`, run_id: RUN_A } })))
      .toEqual([[{ kind: 'registered-model', name: 'iris' }, 'EDIT'], [run(RUN_A), 'READ']]);
    expect(refs(extract('POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'iris', source: 's3://b/k', run_id: RUN_A } })))
      .toEqual([[{ kind: 'registered-model', name: 'iris' }, 'EDIT'], [run(RUN_A), 'READ'], [{ kind: 'location', uri: 's3://b/k', runId: RUN_A }, 'READ']]);
  });
});

describe('a model version\'s source (where /model-versions/get-artifact reads its files)', () => {
  const create = (source: string, extra: Record<string, unknown> = {}) => extract('POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'iris', source, ...extra } });
  const iris = [{ kind: 'registered-model', name: 'iris' }, 'EDIT'];

  it('checks READ on what the URI names, as MLflow parses it', () => {
    expect(refs(create('mlflow-artifacts:/12/r1/artifacts/model'))).toEqual([iris, [{ kind: 'artifact-path', experimentId: '12', path: '12/r1/artifacts/model' }, 'READ']]);
    expect(refs(create('MLFLOW-ARTIFACTS://host:5000/12/r1/artifacts'))).toEqual([iris, [{ kind: 'artifact-path', experimentId: '12', path: '12/r1/artifacts' }, 'READ']]);
    expect(refs(create('mlflow-artifacts:///7'))).toEqual([iris, [{ kind: 'artifact-path', experimentId: '7', path: '7' }, 'READ']]);
    expect(refs(create(`runs:/${RUN_B}/model`))).toEqual([iris, [run(RUN_B), 'READ']]);
    expect(refs(create('models:/churn/3'))).toEqual([iris, [{ kind: 'registered-model', name: 'churn' }, 'READ']]);
    expect(refs(create('models:/churn@champion'))).toEqual([iris, [{ kind: 'registered-model', name: 'churn' }, 'READ']]);
    expect(refs(create('models:/m-0123abcd'))).toEqual([iris, [{ kind: 'logged-model', id: 'm-0123abcd' }, 'READ']]);
    // The model's own versions: one check, at the higher level.
    expect(refs(create('models:/iris/1'))).toEqual([iris]);
  });

  it('refuses a source MLflow could read differently, or that names no experiment', () => {
    expect(refusal(create(' mlflow-artifacts:/12/x'))).toMatch(/starts with a blank/);
    expect(refusal(create('mlflow-artifacts:/12/x\n'))).toMatch(/tab or newline/);
    expect(refusal(create('mlflow-artifacts:/12/x?y'))).toMatch(/"\?", "#"/);
    expect(refusal(create('models:/churn#/3'))).toMatch(/"\?", "#"/);
    expect(refusal(create('mlflow-artifacts:////12/x'))).toMatch(/absolute/);
    expect(refusal(create('mlflow-artifacts:/'))).toMatch(/experiment id/);
    expect(refusal(create('mlflow-artifacts:/12/../13/x'))).toMatch(/"\.\." segment/);
    expect(refusal(create('mlflow-artifacts:/12/%2E%2E/13'))).toMatch(/percent-encoded/);
    expect(refusal(create('runs:/'))).toMatch(/without a run id/);
    expect(refusal(create('models:/a/b/c'))).toMatch(/not a models/);
  });
});

describe('nested fields and double-encoded bodies', () => {
  const startTrace = (trace: unknown) => extract('POST', '/api/3.0/mlflow/traces', { body: { trace } });

  it('finds the experiment of a v3 trace deep in its location', () => {
    expect(refs(startTrace({ trace_info: { trace_id: 'tr-1', trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: '9' } } } })))
      .toEqual([[experiment('9'), 'EDIT'], [{ kind: 'trace', id: 'tr-1' }, 'EDIT']]);
    expect(refusal(startTrace({ trace_info: { trace_location: { type: 'UC_SCHEMA', uc_schema: { catalog_name: 'c' } } } }))).toMatch(/Missing value/);
    // The trace id is required: MLflow would move an existing trace of the id given, "" included.
    expect(refusal(startTrace({ trace_info: { trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: '9' } } } }))).toMatch(/Missing value for required parameter 'trace.trace_info.trace_id'/);
    expect(refusal(startTrace({ traceInfo: {} }))).toMatch(/traceInfo/);
  });

  it('decodes a body that is a JSON string holding JSON, as older clients send and MLflow accepts', () => {
    const doubled = JSON.stringify(JSON.stringify({ run_id: RUN_A, key: 'm', value: 1, timestamp: 1 }));
    expect(refs(extract('POST', '/api/2.0/mlflow/runs/log-metric', { body: doubled }))).toEqual([[run(RUN_A), 'EDIT']]);
  });

  it('parses bodies as MLflow does, and refuses what it cannot read', () => {
    expect(parseRequestJson('')).toEqual({ ok: true, value: {} });
    expect(parseRequestJson('  \n')).toEqual({ ok: true, value: {} });
    expect(parseRequestJson('null')).toEqual({ ok: true, value: {} });
    expect(parseRequestJson(Buffer.from('\ufeff{"a":"b"}'))).toEqual({ ok: true, value: { a: 'b' } });
    expect(parseRequestJson('[1]').ok).toBe(false);
    expect(parseRequestJson('{"a": NaN}').ok).toBe(false);
    expect(parseRequestJson('not json').ok).toBe(false);
    expect(parseRequestJson(Buffer.from([0x7b, 0xff, 0x7d])).ok).toBe(false);
  });
});

describe('path parameters', () => {
  const MODEL = 'm-0123456789abcdef0123456789abcdef';

  it('are checked with no body at all', () => {
    expect(refs(extract('GET', `/api/2.0/mlflow/logged-models/${MODEL}`))).toEqual([[{ kind: 'logged-model', id: MODEL }, 'READ']]);
    expect(refs(extract('GET', '/ajax-api/3.0/mlflow/traces/tr-1/assessments/a-1'))).toEqual([[{ kind: 'trace', id: 'tr-1' }, 'READ']]);
  });

  it('must agree with the same field in the message', () => {
    expect(refs(extract('PATCH', `/api/2.0/mlflow/logged-models/${MODEL}`, { body: { model_id: MODEL, status: 'LOGGED_MODEL_READY' } }))).toHaveLength(1);
    expect(refusal(extract('PATCH', `/api/2.0/mlflow/logged-models/${MODEL}`, { body: { model_id: 'm-other', status: 'LOGGED_MODEL_READY' } }))).toMatch(/path names model_id/);
    expect(refusal(extract('GET', `/api/2.0/mlflow/logged-models/${MODEL}?model_id=m-other`))).toMatch(/path names model_id/);
    expect(refusal(extract('POST', '/api/3.0/mlflow/traces/tr-1/assessments', { body: { assessment: { trace_id: 'tr-2', name: 'x' } } }))).toMatch(/assessment.trace_id/);
    expect(refs(extract('POST', '/api/3.0/mlflow/traces/tr-1/assessments', { body: { assessment: { trace_id: 'tr-1', name: 'x' } } }))).toEqual([[{ kind: 'trace', id: 'tr-1' }, 'EDIT']]);
  });

  it('Flask routes take only the path parameter: their handler has no message', () => {
    const files = `/ajax-api/2.0/mlflow/logged-models/${MODEL}/artifacts/files`;
    expect(refs(extract('GET', `${files}?artifact_file_path=MLmodel&model_id=m-other`))).toEqual([[{ kind: 'logged-model', id: MODEL }, 'READ']]);
    expect(needsRequestBody(matchRule('GET', files)!.rule, false)).toBe(false);
  });
});

describe('artifact paths', () => {
  const ART = '/api/2.0/mlflow-artifacts/artifacts';

  it('name their experiment in the first segment', () => {
    expect(refs(extract('PUT', `${ART}/12/${RUN_A}/artifacts/loss%20curve.png`))).toEqual([[{ kind: 'artifact-path', experimentId: '12', path: `12/${RUN_A}/artifacts/loss curve.png` }, 'EDIT']]);
    expect(refs(extract('DELETE', `/ajax-api/2.0/mlflow-artifacts/artifacts/12/${RUN_A}/artifacts/x`))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'MANAGE']]);
    expect(refs(extract('GET', `/api/2.0/mlflow-artifacts/presigned/12/${RUN_A}/artifacts/x`))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'READ']]);
  });

  it('refuse what does not start with an experiment id, or names the experiment directory itself', () => {
    expect(refusal(extract('PUT', `${ART}/team-a/${RUN_A}/x`))).toMatch(/experiment id/);
    expect(refusal(extract('PUT', `${ART}/01/${RUN_A}/x`))).toMatch(/experiment id/);
    expect(refusal(extract('PUT', `${ART}/12`))).toMatch(/experiment directory/);
  });

  it('with MLflow workspaces: workspaces/<name>/ is taken off in its own workspace and refused in any other', () => {
    // MLflow roots a non-default workspace's paths at workspaces/<name>/ and refuses another's prefix.
    expect(refs(extract('PUT', `${ART}/workspaces/team-a/12/${RUN_A}/x`, { workspace: 'team-a' }))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'EDIT']]);
    expect(refs(extract('PUT', `${ART}/12/${RUN_A}/x`, { workspace: 'team-a' }))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'EDIT']]);
    expect(refs(extract('PUT', `${ART}/workspaces/default/12/${RUN_A}/x`))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'EDIT']]);
    expect(refs(extract('GET', `${ART}?path=workspaces%2Fteam-a%2F12`, { workspace: 'team-a' }))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'READ']]);
    expect(refusal(extract('PUT', `${ART}/workspaces/team-b/12/${RUN_A}/x`, { workspace: 'team-a' }))).toMatch(/in workspace "team-b", not in the request's workspace team-a/);
    expect(refusal(extract('PUT', `${ART}/workspaces/team-a/12/${RUN_A}/x`))).toMatch(/in workspace "team-a", not in the request's workspace default \(name it in X-MLFLOW-WORKSPACE\)/);
    expect(refusal(extract('GET', `${ART}?path=workspaces%2Fteam-a`, { workspace: 'team-a' }))).toMatch(/experiment id/);
    expect(refusal(extract('GET', `${ART}?path=workspaces`, { workspace: 'team-a' }))).toMatch(/in workspace ""/);
    expect(refusal(extract('POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'm', source: `mlflow-artifacts:/workspaces/team-b/12/${RUN_A}/artifacts/model` }, workspace: 'team-a' }))).toMatch(/in workspace "team-b"/);
    expect(refs(extract('POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'm', source: `mlflow-artifacts:/workspaces/team-a/12/${RUN_A}/artifacts/model` }, workspace: 'team-a' }))).toContainEqual([expect.objectContaining({ kind: 'artifact-path', experimentId: '12' }), 'READ']);
  });

  it('take the listing path from the message, with the same rules after the query parser decodes it', () => {
    expect(refs(extract('GET', `${ART}?path=12%2F${RUN_A}%2Fartifacts`))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'READ']]);
    expect(refs(extract('GET', `${ART}?path=12`))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'READ']]);
    expect(refs(extract('GET', ART, { body: { path: '3/x' } }))).toEqual([[expect.objectContaining({ experimentId: '3' }), 'READ']]);
    expect(refusal(extract('GET', `${ART}?path=12%2F..%2F13`))).toMatch(/".." segment/);
    expect(refusal(extract('GET', `${ART}?path=%252E%252E%2F13`))).toMatch(/percent-encoded/);
    expect(refusal(extract('GET', `${ART}?path=.%2F1%2Fx`))).toMatch(/"\." segment/);
    expect(refusal(extract('GET', `${ART}?path=%2F1%2Fx`))).toMatch(/absolute/);
  });

  it('listing the artifact root is for admins (the auth app gave it the default permission)', () => {
    const result = extract('GET', ART);
    expect(result).toMatchObject({ ok: false, status: 403, code: 'PERMISSION_DENIED' });
    expect(extract('GET', `${ART}?path=`)).toMatchObject({ ok: false, status: 403 });
  });

  it('check relative artifact paths given to run, model-version and trace routes', () => {
    expect(refusal(extract('GET', `/get-artifact?run_id=${RUN_A}&path=..%2F..%2Fother%2Fx`))).toMatch(/"\.\." segment/);
    expect(refusal(extract('GET', `/model-versions/get-artifact?name=iris&version=1&path=%2Fetc%2Fpasswd`))).toMatch(/absolute/);
    expect(refusal(extract('GET', `/api/2.0/mlflow/artifacts/list?run_id=${RUN_A}&path=a%5Cb`))).toMatch(/backslash/);
    expect(refusal(extract('POST', `/ajax-api/2.0/mlflow/upload-artifact?run_uuid=${RUN_A}&path=file%3A%2F%2F%2Fetc`))).toMatch(/file: URI/);
    expect(refs(extract('GET', `/api/2.0/mlflow/artifacts/list?run_id=${RUN_A}`))).toEqual([[run(RUN_A), 'READ']]);
  });

  it('check the file name a multipart upload appends to the checked directory', () => {
    const mpu = `/api/2.0/mlflow-artifacts/mpu/create/12/${RUN_A}/artifacts`;
    expect(refs(extract('POST', mpu, { body: { path: '/home/me/model.bin', num_parts: 3 } }))).toEqual([[expect.objectContaining({ experimentId: '12' }), 'EDIT']]);
    expect(refusal(extract('POST', mpu, { body: { path: '..', num_parts: 3 } }))).toMatch(/file name/);
  });
});

describe('headers, tags and names', () => {
  it('reads the OTLP experiment header', () => {
    expect(refs(extract('POST', '/v1/traces', { headers: { 'x-mlflow-experiment-id': '4' } }))).toEqual([[experiment('4'), 'EDIT']]);
    expect(refusal(extract('POST', '/v1/traces'))).toMatch(/request headers/);
    expect(refusal(extract('POST', '/v1/traces', { headers: { 'x-mlflow-experiment-id': ['4', '5'] } }))).toMatch(/more than once/);
  });

  it('returns the tag keys a route writes, for the reserved-key checks', () => {
    const created = extract('POST', '/api/2.0/mlflow/experiments/create', { body: { name: 'team-a/churn', tags: [{ key: 'mlgate.owner', value: 'eve' }, { key: 'team', value: 'a' }] } });
    // The name is checked too: MLflow's "already exists" must not tell who may not READ it that it exists.
    expect(created).toEqual({ ok: true, checks: [{ ref: { kind: 'experiment-name', name: 'team-a/churn' }, level: 'READ', source: 'body name' }], tagKeys: ['mlgate.owner', 'team'], newName: 'team-a/churn' });
    expect(extract('POST', '/api/2.0/mlflow/experiments/delete-experiment-tag', { body: { experiment_id: '1', key: 'mlgate.owner' } })).toMatchObject({ tagKeys: ['mlgate.owner'] });
    expect(extract('DELETE', '/ajax-api/2.0/mlflow/registered-models/delete-tag', { body: { name: 'iris', key: 'mlgate.grant.bob' } })).toMatchObject({ tagKeys: ['mlgate.grant.bob'] });
    expect(extract('POST', '/api/2.0/mlflow/runs/log-batch', { body: { run_id: RUN_A, tags: [{ key: 'mlflow.user', value: 'root' }] } })).toMatchObject({ tagKeys: ['mlflow.user'] });
    expect(extract('POST', '/api/2.0/mlflow/runs/log-batch', { body: { run_id: RUN_A, metrics: [] } })).toMatchObject({ tagKeys: [] });
    expect(refusal(extract('POST', '/api/2.0/mlflow/registered-models/create', { body: { name: 'iris', tags: [{ value: 'x' }] } }))).toMatch(/tags has no key/);
  });

  it('returns the new name of a rename', () => {
    expect(extract('POST', '/api/2.0/mlflow/registered-models/rename', { body: { name: 'iris', new_name: 'team-b/iris' } }))
      .toEqual({
        ok: true, tagKeys: [], newName: 'team-b/iris',
        checks: [{ ref: { kind: 'registered-model', name: 'iris' }, level: 'MANAGE', source: 'body name' }, { ref: { kind: 'registered-model', name: 'team-b/iris' }, level: 'READ', source: 'body new_name' }],
      });
  });

  it('gives no checks for routes decided without a resource', () => {
    expect(extract('POST', '/graphql')).toEqual({ ok: true, checks: [], tagKeys: [] });
    expect(extract('GET', '/api/2.0/mlflow/registered-models/search?max_results=10')).toEqual({ ok: true, checks: [], tagKeys: [] });
  });

  it('says where each id came from', () => {
    const result = extract('GET', `/api/2.0/mlflow/runs/get?run_uuid=${RUN_A}`);
    expect(result.ok && result.checks[0]!.source).toBe('query run_uuid');
  });
});
