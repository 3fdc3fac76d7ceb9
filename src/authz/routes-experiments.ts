// Experiments, runs and metrics (reference §3 "Experiments", "Runs, metrics, params", §4 Flask extras).
// An experiment carries the permission for its runs, so every run id is checked on its experiment.
import {
  experiment, experimentNamed, experiments, loggedModel, optional, run, runOrUuid, runs, RUN_TAGS,
  type RouteDef,
} from './route-rule.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';

/** Creates and renames name a resource that may exist: MLflow's "already exists" would tell a user who may not see it that it does. */
export const NAME_NOT_HIDDEN = 'auth app: unchecked. The new name must be one the user may READ (an existing resource, or the rules for a new one), '
  + 'so that MLflow\'s RESOURCE_ALREADY_EXISTS never tells someone below READ that a hidden resource exists';

const LINKS_MODELS = 'auth app: unchecked; it writes to the run, and the logged models it links (models[].model_id) must be readable';

const RENAME_NEEDS_MANAGE = 'auth app: EDIT. A new name can move the resource under other policy rules (name globs), and renaming is MANAGE in mlgate\'s model';

export const EXPERIMENT_ROUTES: readonly RouteDef[] = [
  { at: `GET ${V2}/experiments/get-by-name`, find: [experimentNamed('READ', 'experiment_name')] },
  {
    at: `POST ${V2}/experiments/create`, find: [experimentNamed('READ', 'name')], creates: 'experiment', writesTags: { on: 'experiment', keyField: 'tags[].key' },
    adminOnlyFields: [{ field: 'artifact_location', why: 'MLflow writes and serves the experiment\'s files there (file:, another experiment\'s mlflow-artifacts:/ path, a URL it would fetch)' }],
    deviation: 'auth app: any user may set artifact_location; here only admins, because every run, model and trace of the experiment is read from and written to it. '
      + NAME_NOT_HIDDEN,
  },
  { at: `POST ${V2}/experiments/search`, access: 'none', filter: 'experiments' },
  { at: `GET ${V2}/experiments/search`, access: 'none', filter: 'experiments' },
  { at: `GET ${V2}/experiments/get`, find: [experiment('READ')] },
  { at: `POST ${V2}/experiments/delete`, find: [experiment('MANAGE')], invalidates: ['experiment'] },
  { at: `POST ${V2}/experiments/restore`, find: [experiment('MANAGE')], invalidates: ['experiment'] },
  {
    at: `POST ${V2}/experiments/update`, find: [experiment('MANAGE'), optional(experimentNamed('READ', 'new_name'))], renames: { on: 'experiment', newNameField: 'new_name' },
    deviation: `${RENAME_NEEDS_MANAGE}. ${NAME_NOT_HIDDEN}`,
  },
  { at: `POST ${V2}/experiments/set-experiment-tag`, find: [experiment('EDIT')], writesTags: { on: 'experiment', keyField: 'key' } },
  { at: `POST ${V2}/experiments/delete-experiment-tag`, find: [experiment('EDIT')], writesTags: { on: 'experiment', keyField: 'key' } },
  // The proto path lacks its leading slash, so Flask serves it at /api/2.0mlflow/... (sic).
  {
    at: 'POST /{api,ajax-api}/2.0mlflow/experiments/search-datasets', find: [experiments('READ')],
    deviation: 'auth app: authenticated only on this (broken) path; READ on every experiment, as on the working AJAX route',
  },
  { at: 'POST /ajax-api/2.0/mlflow/experiments/search-datasets', find: [experiments('READ')] },
];

export const RUN_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V2}/runs/create`, find: [experiment('EDIT')], stampsUser: true, writesTags: RUN_TAGS('tags[].key') },
  { at: `POST ${V2}/runs/update`, find: [runOrUuid('EDIT')] },
  { at: `POST ${V2}/runs/delete`, find: [run('MANAGE')] },
  { at: `POST ${V2}/runs/restore`, find: [run('MANAGE')] },
  { at: `POST ${V2}/runs/log-metric`, find: [runOrUuid('EDIT')] },
  { at: `POST ${V2}/runs/log-parameter`, find: [runOrUuid('EDIT')] },
  { at: `POST ${V2}/runs/set-tag`, find: [runOrUuid('EDIT')], writesTags: RUN_TAGS('key') },
  { at: `POST ${V2}/runs/delete-tag`, find: [run('EDIT')], writesTags: RUN_TAGS('key') },
  { at: `GET ${V2}/runs/get`, find: [runOrUuid('READ')] },
  {
    at: `POST ${V2}/runs/search`, find: [experiments('READ')],
    deviation: 'auth app: unchecked (2.17), unreadable ids silently dropped (3.6+); here every listed experiment must be readable, so the body is forwarded as checked',
  },
  { at: `GET ${V2}/artifacts/list`, find: [runOrUuid('READ')], checksPaths: [{ from: 'message', field: 'path', kind: 'relative' }] },
  { at: `GET ${V2}/metrics/get-history`, find: [runOrUuid('READ')] },
  {
    at: `GET ${V2}/metrics/get-history-bulk-interval`, find: [runs('READ', 'run_ids[]')],
    deviation: 'auth app: unchecked on /api/2.0 (checked on /ajax-api/2.0 only); READ on every run on both',
  },
  { at: `POST ${V2}/runs/log-batch`, find: [run('EDIT')], writesTags: RUN_TAGS('tags[].key') },
  { at: `POST ${V2}/runs/log-model`, find: [run('EDIT')] },
  // 3.x: `models` links logged models to the run; MLflow stores any id, so the gateway checks them.
  { at: `POST ${V2}/runs/log-inputs`, find: [run('EDIT'), optional(loggedModel('READ', 'models[].model_id'))], deviation: LINKS_MODELS },
  { at: `POST ${V2}/runs/outputs`, find: [run('EDIT'), optional(loggedModel('READ', 'models[].model_id'))], deviation: LINKS_MODELS },
  // Flask routes of the UI (request.args only).
  { at: 'GET /ajax-api/2.0/mlflow/metrics/get-history-bulk', find: [runs('READ', 'run_id[]', 'query')] },
  {
    at: 'POST /ajax-api/2.0/mlflow/runs/create-promptlab-run', find: [experiment('EDIT')],
    stampsUser: true, writesTags: RUN_TAGS('tags[].key'),
  },
];
