// Logged models (MLflow 3.x; reference §3 "Logged models", §4): checked on their experiment, as the
// auth app does since 3.0.
import { experiment, experiments, inPath, optional, run, type RouteDef } from './route-rule.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';

export const LOGGED_MODEL_ROUTES: readonly RouteDef[] = [
  {
    at: `POST ${V2}/logged-models`, find: [experiment('EDIT'), optional(run('READ', 'source_run_id'))],
    deviation: 'auth app: EDIT on the experiment only; a source run given must also be readable',
  },
  { at: `GET ${V2}/logged-models/{model_id}`, find: [inPath('logged-model', 'READ', 'model_id')] },
  { at: `PATCH ${V2}/logged-models/{model_id}`, find: [inPath('logged-model', 'EDIT', 'model_id')] },
  { at: `DELETE ${V2}/logged-models/{model_id}`, find: [inPath('logged-model', 'MANAGE', 'model_id')] },
  {
    at: `POST ${V2}/logged-models/search`, find: [experiments('READ')], filter: 'logged-models',
    deviation: 'auth app: unchecked, results filtered; here every listed experiment must be readable as well',
  },
  { at: `PATCH ${V2}/logged-models/{model_id}/tags`, find: [inPath('logged-model', 'EDIT', 'model_id')] },
  { at: `DELETE ${V2}/logged-models/{model_id}/tags/{tag_key}`, find: [inPath('logged-model', 'MANAGE', 'model_id')] },
  {
    at: `GET ${V2}/logged-models/{model_id}/artifacts/directories`, find: [inPath('logged-model', 'READ', 'model_id')],
    checksPaths: [{ from: 'message', field: 'artifact_directory_path', kind: 'relative' }],
  },
  { at: `POST ${V2}/logged-models/{model_id}/params`, find: [inPath('logged-model', 'EDIT', 'model_id')] },
  {
    at: 'GET /ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files', find: [inPath('logged-model', 'READ', 'model_id', false)],
    checksPaths: [{ from: 'query', field: 'artifact_file_path', kind: 'relative' }],
  },
];
