// A conformance scenario as data: the HTTP requests the real MLflow Python client sends
// (reference mlflow-client-paths.md), plus the error cases a gateway must pass through untouched.
// test/mlflow/fake-matches-real.test.ts runs it against the real server and against the fake
// (test/helpers/mlflow-upstream.ts) and compares the answers.
//
// A step is one request. Strings in `path`, `query` and `body` may name `{{var}}`s: `prefix` (the
// names this run uses, unique on a shared server), `t0` (a fixed time in ms) and whatever earlier
// steps `save`d from their answers (a dotted path into the JSON answer, e.g. `run.info.run_id`). A
// saved value is an id that differs between servers: the comparison writes it as `<var>`.

export interface ScenarioStep {
  /** Unique; what a disagreement is reported under. */
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT';
  /** From the server's root, e.g. /api/2.0/mlflow/runs/get. */
  path: string;
  /** The query string (GET: what the client sends as `params=`). */
  query?: Record<string, string>;
  /** A JSON body (sent with Content-Type application/json unless `contentType` says otherwise). */
  body?: unknown;
  /** A body sent as it is (artifact uploads, bodies without a JSON Content-Type). */
  raw?: string;
  /** The Content-Type header to send instead; null sends none. */
  contentType?: string | null;
  /** Values to keep from the answer, by name: dotted paths into the JSON answer. */
  save?: Record<string, string>;
  /** Only against this MLflow major version (e.g. logged models are 3.x). */
  major?: 2 | 3;
}

const API = '/api/2.0/mlflow';
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts';

const get = (name: string, route: string, query: Record<string, string>, extra: Partial<ScenarioStep> = {}): ScenarioStep =>
  ({ name, method: 'GET', path: `${API}/${route}`, query, ...extra });
const post = (name: string, route: string, body: unknown, extra: Partial<ScenarioStep> = {}): ScenarioStep =>
  ({ name, method: 'POST', path: `${API}/${route}`, body, ...extra });
const patch = (name: string, route: string, body: unknown, extra: Partial<ScenarioStep> = {}): ScenarioStep =>
  ({ name, method: 'PATCH', path: `${API}/${route}`, body, ...extra });
const del = (name: string, route: string, body: unknown, extra: Partial<ScenarioStep> = {}): ScenarioStep =>
  ({ name, method: 'DELETE', path: `${API}/${route}`, body, ...extra });

const RUN_ARTIFACTS = '{{exp}}/{{run}}/artifacts';
const MODEL = '{{prefix}}-model';

export const CONFORMANCE_SCENARIO: readonly ScenarioStep[] = [
  // ---- the server ----
  { name: 'health', method: 'GET', path: '/health' },
  { name: 'version', method: 'GET', path: '/version' },
  get('an unknown API route', 'no-such-route', { x: '1' }),

  // ---- experiments ----
  post('experiments/create', 'experiments/create', { name: '{{prefix}}-exp-a', tags: [{ key: 'team', value: 'conformance' }] }, { save: { exp: 'experiment_id' } }),
  post('experiments/create a duplicate name', 'experiments/create', { name: '{{prefix}}-exp-a' }),
  post('experiments/create without a name', 'experiments/create', {}),
  post('experiments/create b', 'experiments/create', { name: '{{prefix}}-exp-b' }, { save: { exp_b: 'experiment_id' } }),
  post('experiments/create c', 'experiments/create', { name: '{{prefix}}-exp-c' }, { save: { exp_c: 'experiment_id' } }),
  get('experiments/get', 'experiments/get', { experiment_id: '{{exp}}' }),
  get('experiments/get-by-name', 'experiments/get-by-name', { experiment_name: '{{prefix}}-exp-a' }),
  get('experiments/get of a missing experiment', 'experiments/get', { experiment_id: '987654321' }),
  get('experiments/get-by-name of a missing experiment', 'experiments/get-by-name', { experiment_name: '{{prefix}}-nowhere' }),
  get('experiments/get without experiment_id', 'experiments/get', { other: 'x' }),
  { name: 'experiments/get with a JSON body and no query', method: 'GET', path: `${API}/experiments/get`, body: { experiment_id: '{{exp}}' } },
  { name: 'experiments/get through /ajax-api', method: 'GET', path: '/ajax-api/2.0/mlflow/experiments/get', query: { experiment_id: '{{exp}}' } },
  get('experiments/get-by-name without a name', 'experiments/get-by-name', { other: 'x' }),
  post('experiments/set-experiment-tag', 'experiments/set-experiment-tag', { experiment_id: '{{exp}}', key: 'stage', value: 'dev' }),
  post('experiments/set-experiment-tag with a bad key', 'experiments/set-experiment-tag', { experiment_id: '{{exp}}', key: '../up', value: 'x' }),
  post('experiments/set-experiment-tag on a missing experiment', 'experiments/set-experiment-tag', { experiment_id: '987654321', key: 'stage', value: 'dev' }),
  post('experiments/delete-experiment-tag', 'experiments/delete-experiment-tag', { experiment_id: '{{exp}}', key: 'stage' }, { major: 3 }),
  post('experiments/update (rename)', 'experiments/update', { experiment_id: '{{exp_c}}', new_name: '{{prefix}}-exp-c2' }),
  post('experiments/search, filtered, first page', 'experiments/search', { filter: "name LIKE '{{prefix}}-exp-%'", max_results: 2 }, { save: { exp_page: 'next_page_token' } }),
  post('experiments/search, filtered, second page', 'experiments/search', { filter: "name LIKE '{{prefix}}-exp-%'", max_results: 2, page_token: '{{exp_page}}' }),
  post('experiments/search by exact name', 'experiments/search', { filter: "name = '{{prefix}}-exp-b'", max_results: 10 }),
  post('experiments/search with max_results 0', 'experiments/search', { max_results: 0 }),
  post('experiments/search with a bad page token', 'experiments/search', { max_results: 10, page_token: 'not-a-token' }),
  post('experiments/search without Content-Type', 'experiments/search', undefined, { raw: JSON.stringify({ filter: "name = '{{prefix}}-exp-b'", max_results: 10 }), contentType: null }),
  post('experiments/search with Content-Type text/plain', 'experiments/search', undefined, { raw: JSON.stringify({ filter: "name = '{{prefix}}-exp-b'", max_results: 10 }), contentType: 'text/plain' }),
  post('experiments/search with max_results above the limit', 'experiments/search', { max_results: 60000 }),
  post('experiments/create without Content-Type', 'experiments/create', undefined, { raw: JSON.stringify({ name: '{{prefix}}-no-type' }), contentType: null }),
  post('experiments/delete', 'experiments/delete', { experiment_id: '{{exp_c}}' }),
  get('experiments/get of a deleted experiment', 'experiments/get', { experiment_id: '{{exp_c}}' }),
  post('experiments/search of deleted experiments', 'experiments/search', { filter: "name LIKE '{{prefix}}-exp-%'", view_type: 'DELETED_ONLY', max_results: 10 }),
  post('experiments/search without max_results', 'experiments/search', { filter: "name LIKE '{{prefix}}-exp-%'" }),
  { name: 'experiments/search (GET) without max_results', method: 'GET', path: '/api/2.0/mlflow/experiments/search', query: { filter: "name LIKE '{{prefix}}-exp-%'" } },
  post('experiments/delete again', 'experiments/delete', { experiment_id: '{{exp_c}}' }),
  post('runs/create in a deleted experiment', 'runs/create', { experiment_id: '{{exp_c}}', start_time: '{{t0}}' }),
  post('experiments/restore', 'experiments/restore', { experiment_id: '{{exp_c}}' }),

  // ---- runs ----
  post('runs/create', 'runs/create', { experiment_id: '{{exp}}', run_name: 'first', start_time: '{{t0}}', tags: [{ key: 'source', value: 'scenario' }] }, { save: { run: 'run.info.run_id' } }),
  post('runs/create second', 'runs/create', { experiment_id: '{{exp}}', run_name: 'second', start_time: '{{t1}}' }, { save: { run2: 'run.info.run_id' } }),
  post('runs/create in a missing experiment', 'runs/create', { experiment_id: '987654321', start_time: '{{t0}}' }),
  post('runs/log-parameter', 'runs/log-parameter', { run_id: '{{run}}', run_uuid: '{{run}}', key: 'alpha', value: '0.5' }),
  post('runs/log-parameter with a bad key', 'runs/log-parameter', { run_id: '{{run}}', key: '../alpha', value: '1' }),
  post('runs/set-tag with Content-Type text/plain', 'runs/set-tag', undefined, { raw: JSON.stringify({ run_id: '{{run}}', key: 'plain', value: 'x' }), contentType: 'text/plain' }),
  post('runs/log-parameter changing a value', 'runs/log-parameter', { run_id: '{{run}}', key: 'alpha', value: '0.7' }),
  post('runs/log-metric', 'runs/log-metric', { run_id: '{{run}}', run_uuid: '{{run}}', key: 'loss', value: 0.5, timestamp: 1700000000000, step: 0 }),
  post('runs/log-metric step 1', 'runs/log-metric', { run_id: '{{run}}', key: 'loss', value: 0.25, timestamp: 1700000000001, step: 1 }),
  post('runs/log-metric without Content-Type', 'runs/log-metric', undefined, { raw: JSON.stringify({ run_id: '{{run}}', key: 'untyped', value: 1, timestamp: 1700000000000, step: 0 }), contentType: null }),
  post('runs/log-metric without a value', 'runs/log-metric', { run_id: '{{run}}', key: 'loss', timestamp: 1700000000002, step: 2 }),
  post('runs/log-metric on a missing run', 'runs/log-metric', { run_id: '0123456789abcdef0123456789abcdef', key: 'loss', value: 1, timestamp: 1700000000000, step: 0 }),
  post('runs/log-batch', 'runs/log-batch', {
    run_id: '{{run}}',
    metrics: [{ key: 'acc', value: 0.9, timestamp: 1700000000000, step: 0 }, { key: 'f1', value: 0.8, timestamp: 1700000000000, step: 0 }],
    params: [{ key: 'layers', value: '3' }],
    tags: [{ key: 'batch', value: 'yes' }],
  }),
  post('runs/log-batch with a bad tag key', 'runs/log-batch', { run_id: '{{run}}', tags: [{ key: '/abs', value: 'x' }] }),
  post('runs/set-tag', 'runs/set-tag', { run_id: '{{run}}', run_uuid: '{{run}}', key: 'temp', value: 'x' }),
  post('runs/delete-tag', 'runs/delete-tag', { run_id: '{{run}}', key: 'temp' }),
  post('runs/delete-tag of a missing tag', 'runs/delete-tag', { run_id: '{{run}}', key: 'never-set' }),
  get('runs/get', 'runs/get', { run_id: '{{run}}', run_uuid: '{{run}}' }),
  get('runs/get of a missing run', 'runs/get', { run_id: '0123456789abcdef0123456789abcdef' }),
  get('runs/get without run_id', 'runs/get', { other: 'x' }),
  get('runs/get by run_uuid only', 'runs/get', { run_uuid: '{{run}}' }),
  get('metrics/get-history (as the client asks)', 'metrics/get-history', { run_id: '{{run}}', run_uuid: '{{run}}', metric_key: 'loss', max_results: '25000' }),
  get('metrics/get-history without max_results', 'metrics/get-history', { run_id: '{{run}}', metric_key: 'loss' }),
  get('metrics/get-history of a missing run', 'metrics/get-history', { run_id: '0123456789abcdef0123456789abcdef', metric_key: 'loss', max_results: '100' }),
  post('runs/update', 'runs/update', { run_id: '{{run}}', run_uuid: '{{run}}', status: 'FINISHED', end_time: 1700000000500 }),
  post('runs/update of a missing run', 'runs/update', { run_id: '0123456789abcdef0123456789abcdef', status: 'FINISHED' }),
  post('runs/log-model', 'runs/log-model', { run_id: '{{run}}', model_json: '{"run_id": "{{run}}", "artifact_path": "model", "utc_time_created": "2026-01-01 00:00:00.000000", "flavors": {"python_function": {}}}' }, { major: 2 }),
  post('runs/search, first page', 'runs/search', { experiment_ids: ['{{exp}}'], max_results: 1 }, { save: { run_page: 'next_page_token' } }),
  post('runs/search, second page', 'runs/search', { experiment_ids: ['{{exp}}'], max_results: 1, page_token: '{{run_page}}' }),
  post('runs/search with a filter', 'runs/search', { experiment_ids: ['{{exp}}'], filter: "params.alpha = '0.5'", max_results: 10 }),
  post('runs/search with a metrics filter', 'runs/search', { experiment_ids: ['{{exp}}'], filter: 'metrics.loss < 0.3', max_results: 10 }),
  post('runs/search with a bad filter', 'runs/search', { experiment_ids: ['{{exp}}'], filter: 'nonsense here', max_results: 10 }),
  post('runs/delete', 'runs/delete', { run_id: '{{run2}}' }),
  get('runs/get of a deleted run', 'runs/get', { run_id: '{{run2}}' }),
  post('runs/search without deleted runs', 'runs/search', { experiment_ids: ['{{exp}}'], max_results: 10 }),
  post('runs/restore', 'runs/restore', { run_id: '{{run2}}' }),

  // ---- artifacts through the proxy (--serve-artifacts) ----
  { name: 'artifact upload', method: 'PUT', path: `${ARTIFACTS}/${RUN_ARTIFACTS}/notes.txt`, raw: 'hello from the scenario\n', contentType: 'application/octet-stream' },
  { name: 'artifact upload in a directory', method: 'PUT', path: `${ARTIFACTS}/${RUN_ARTIFACTS}/plots/a.csv`, raw: 'x,y\n1,2\n', contentType: 'application/octet-stream' },
  { name: 'artifact list (mlflow-artifacts)', method: 'GET', path: ARTIFACTS, query: { path: RUN_ARTIFACTS } },
  { name: 'artifact list of a directory', method: 'GET', path: ARTIFACTS, query: { path: `${RUN_ARTIFACTS}/plots` } },
  { name: 'artifact list of a missing directory', method: 'GET', path: ARTIFACTS, query: { path: `${RUN_ARTIFACTS}/nowhere` } },
  { name: 'artifact download', method: 'GET', path: `${ARTIFACTS}/${RUN_ARTIFACTS}/notes.txt` },
  { name: 'artifact download of a missing file', method: 'GET', path: `${ARTIFACTS}/${RUN_ARTIFACTS}/missing.txt` },
  get('artifacts/list (tracking API)', 'artifacts/list', { run_id: '{{run}}' }),
  get('artifacts/list of a directory', 'artifacts/list', { run_id: '{{run}}', path: 'plots' }),

  // ---- registered models and versions ----
  post('registered-models/create', 'registered-models/create', { name: MODEL, tags: [{ key: 'task', value: 'echo' }], description: 'a scenario model' }),
  post('registered-models/create a duplicate name', 'registered-models/create', { name: MODEL }),
  get('registered-models/get', 'registered-models/get', { name: MODEL }),
  get('registered-models/get of a missing model', 'registered-models/get', { name: '{{prefix}}-no-model' }),
  post('registered-models/set-tag', 'registered-models/set-tag', { name: MODEL, key: 'owner-team', value: 'ml' }),
  del('registered-models/delete-tag', 'registered-models/delete-tag', { name: MODEL, key: 'owner-team' }),
  patch('registered-models/update', 'registered-models/update', { name: MODEL, description: 'an echo model' }),
  post('model-versions/create 1', 'model-versions/create', { name: MODEL, source: `mlflow-artifacts:/${RUN_ARTIFACTS}/model`, run_id: '{{run}}' }),
  post('model-versions/create 2', 'model-versions/create', { name: MODEL, source: `mlflow-artifacts:/${RUN_ARTIFACTS}/model`, run_id: '{{run}}' }),
  post('model-versions/create 3', 'model-versions/create', { name: MODEL, source: `mlflow-artifacts:/${RUN_ARTIFACTS}/model`, run_id: '{{run}}' }),
  post('model-versions/create for a missing model', 'model-versions/create', { name: '{{prefix}}-no-model', source: 'mlflow-artifacts:/x' }),
  get('model-versions/get', 'model-versions/get', { name: MODEL, version: '1' }),
  get('model-versions/get of a missing version', 'model-versions/get', { name: MODEL, version: '99' }),
  get('model-versions/get with a bad version', 'model-versions/get', { name: MODEL, version: 'one' }),
  patch('model-versions/update', 'model-versions/update', { name: MODEL, version: '1', description: 'first' }),
  post('model-versions/set-tag', 'model-versions/set-tag', { name: MODEL, version: '1', key: 'validated', value: 'true' }),
  del('model-versions/delete-tag', 'model-versions/delete-tag', { name: MODEL, version: '1', key: 'validated' }),
  get('model-versions/get-download-uri', 'model-versions/get-download-uri', { name: MODEL, version: '1' }),
  post('registered-models/alias', 'registered-models/alias', { name: MODEL, alias: 'champion', version: '2' }),
  get('registered-models/alias (get)', 'registered-models/alias', { name: MODEL, alias: 'champion' }),
  get('registered-models/alias of a missing alias', 'registered-models/alias', { name: MODEL, alias: 'nobody' }),
  get('registered-models/get with an alias', 'registered-models/get', { name: MODEL }),
  get('registered-models/search with an alias', 'registered-models/search', { filter: `name='${MODEL}'`, max_results: '10' }),
  get('model-versions/search with an alias', 'model-versions/search', { filter: `name='${MODEL}'`, max_results: '10' }),
  del('registered-models/alias (delete)', 'registered-models/alias', { name: MODEL, alias: 'champion' }),
  get('model-versions/search, first page', 'model-versions/search', { filter: `name='${MODEL}'`, max_results: '2' }, { save: { version_page: 'next_page_token' } }),
  get('model-versions/search, second page', 'model-versions/search', { filter: `name='${MODEL}'`, max_results: '2', page_token: '{{version_page}}' }),
  get('registered-models/search, first page', 'registered-models/search', { filter: "name LIKE '{{prefix}}-%'", max_results: '1' }),
  get('registered-models/search by exact name', 'registered-models/search', { filter: `name='${MODEL}'`, max_results: '10' }),
  get('model-versions/search by run_id', 'model-versions/search', { filter: "run_id='{{run}}'", max_results: '10' }),
  get('registered-models/search with max_results 0', 'registered-models/search', { max_results: '0' }),
  del('model-versions/delete', 'model-versions/delete', { name: MODEL, version: '2' }),
  get('model-versions/get of a deleted version', 'model-versions/get', { name: MODEL, version: '2' }),
  del('model-versions/delete again', 'model-versions/delete', { name: MODEL, version: '2' }),
  post('model-versions/create after a delete', 'model-versions/create', { name: MODEL, source: `mlflow-artifacts:/${RUN_ARTIFACTS}/model` }),
  post('registered-models/rename', 'registered-models/rename', { name: MODEL, new_name: `${MODEL}-renamed` }),
  get('registered-models/get of the old name', 'registered-models/get', { name: MODEL }),
  del('registered-models/delete', 'registered-models/delete', { name: `${MODEL}-renamed` }),
  del('registered-models/delete of a missing model', 'registered-models/delete', { name: `${MODEL}-renamed` }),

  // ---- logged models (3.x) ----
  post('logged-models (create)', 'logged-models', { experiment_id: '{{exp}}', name: 'scenario-model', source_run_id: '{{run}}' }, { major: 3, save: { model_id: 'model.info.model_id' } }),
  post('logged-models (create) in a missing experiment', 'logged-models', { experiment_id: '987654321', name: 'x' }, { major: 3 }),
  { name: 'logged model artifact upload', method: 'PUT', path: `${ARTIFACTS}/{{exp}}/models/{{model_id}}/artifacts/MLmodel`, raw: 'flavors: {}\n', contentType: 'application/octet-stream', major: 3 },
  patch('logged-models/{id}/tags', 'logged-models/{{model_id}}/tags', { tags: [{ key: 'flavor', value: 'pyfunc' }] }, { major: 3 }),
  patch('logged-models/{id} (finalize)', 'logged-models/{{model_id}}', { model_id: '{{model_id}}', status: 'LOGGED_MODEL_READY' }, { major: 3 }),
  get('logged-models/{id}', 'logged-models/{{model_id}}', {}, { major: 3 }),
  get('logged-models/{id} of a missing model', 'logged-models/m-0123456789abcdef0123456789abcdef', {}, { major: 3 }),
  post('logged-models/search', 'logged-models/search', { experiment_ids: ['{{exp}}'], max_results: 10 }, { major: 3 }),
  post('logged-models/search without experiments', 'logged-models/search', {}, { major: 3 }),
  post('runs/outputs', 'runs/outputs', { run_id: '{{run}}', models: [{ model_id: '{{model_id}}', step: 0 }] }, { major: 3 }),
  get('runs/get with outputs', 'runs/get', { run_id: '{{run}}' }, { major: 3 }),
  post('logged-models (create) on 2.x, where there are none', 'logged-models', { experiment_id: '{{exp}}', name: 'x' }, { major: 2 }),
  { name: 'logged model artifact list', method: 'GET', path: ARTIFACTS, query: { path: '{{exp}}/models/{{model_id}}/artifacts' }, major: 3 },
];
