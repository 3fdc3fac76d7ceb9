// The model registry (reference §3 "Model registry", §4 model-version artifacts); prompts are
// registered models too. A model version inherits its registered model's permission.
import { loggedModel, modelSource, optional, registeredModel, run, type RouteDef } from './route-rule.ts';
import { NAME_NOT_HIDDEN } from './routes-experiments.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';

export const REGISTRY_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V2}/registered-models/create`, find: [registeredModel('READ')], creates: 'registered-model', writesTags: { on: 'registered-model', keyField: 'tags[].key' }, deviation: NAME_NOT_HIDDEN },
  {
    at: `POST ${V2}/registered-models/rename`, find: [registeredModel('MANAGE'), optional(registeredModel('READ', 'new_name'))], renames: { on: 'registered-model', newNameField: 'new_name' },
    deviation: `auth app: EDIT. A new name can move the model under other policy rules (name globs), and renaming is MANAGE in mlgate's model. ${NAME_NOT_HIDDEN}`,
  },
  { at: `PATCH ${V2}/registered-models/update`, find: [registeredModel('EDIT')] },
  { at: `DELETE ${V2}/registered-models/delete`, find: [registeredModel('MANAGE')], invalidates: ['registered-model'] },
  { at: `GET ${V2}/registered-models/get`, find: [registeredModel('READ')] },
  { at: `GET ${V2}/registered-models/search`, access: 'none', filter: 'registered-models' },
  { at: `POST ${V2}/registered-models/get-latest-versions`, find: [registeredModel('READ')] },
  { at: `GET ${V2}/registered-models/get-latest-versions`, find: [registeredModel('READ')] },
  { at: `POST ${V2}/registered-models/set-tag`, find: [registeredModel('EDIT')], writesTags: { on: 'registered-model', keyField: 'key' } },
  { at: `DELETE ${V2}/registered-models/delete-tag`, find: [registeredModel('EDIT')], writesTags: { on: 'registered-model', keyField: 'key' } },
  { at: `POST ${V2}/registered-models/alias`, find: [registeredModel('EDIT')] },
  { at: `DELETE ${V2}/registered-models/alias`, find: [registeredModel('MANAGE')] },
  { at: `GET ${V2}/registered-models/alias`, find: [registeredModel('READ')] },
  {
    at: `POST ${V2}/model-versions/create`,
    find: [registeredModel('EDIT'), optional(run('READ', 'run_id')), optional(loggedModel('READ', 'model_id')), modelSource('READ')],
    deviation: 'auth app: EDIT on the model only; a run or logged model given as the source, and what the source URI names '
      + '(mlflow-artifacts:/<experiment>/..., runs:/<run>/..., models:/<model>/...), must also be readable: '
      + '/model-versions/get-artifact serves the version\'s files from there',
  },
  { at: `PATCH ${V2}/model-versions/update`, find: [registeredModel('EDIT')] },
  { at: `POST ${V2}/model-versions/transition-stage`, find: [registeredModel('EDIT')] },
  { at: `DELETE ${V2}/model-versions/delete`, find: [registeredModel('MANAGE')] },
  { at: `GET ${V2}/model-versions/get`, find: [registeredModel('READ')] },
  { at: `GET ${V2}/model-versions/search`, access: 'none', filter: 'model-versions' },
  { at: `GET ${V2}/model-versions/get-download-uri`, find: [registeredModel('READ')] },
  { at: `POST ${V2}/model-versions/set-tag`, find: [registeredModel('EDIT')] },
  { at: `DELETE ${V2}/model-versions/delete-tag`, find: [registeredModel('MANAGE')] },
  // Flask route (request.args only).
  { at: 'GET /model-versions/get-artifact', find: [registeredModel('READ', 'name', 'query')], checksPaths: [{ from: 'query', field: 'path', kind: 'relative' }] },
];
