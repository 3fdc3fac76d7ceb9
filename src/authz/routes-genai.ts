// MLflow 3.x GenAI families (reference §3 "Evaluation datasets", "Issues", "Scorers", "Prompt
// optimization jobs", §4 online scoring): all checked on an experiment. Objects whose id the
// reference gives no documented way to map to an experiment (issues, jobs, scorer ids) are
// admin-only when addressed by id.
import { datasetIn, experiment, experiments, inPath, optional, promptUri, run, type RouteDef } from './route-rule.ts';

const V3 = '/{api,ajax-api}/3.0/mlflow';
const UNCHECKED = 'auth app 3.11.1: unchecked';
const NO_MAPPING = 'the reference documents no way to find this object\'s experiment';

const dataset = (level: 'READ' | 'EDIT' | 'MANAGE') => inPath('dataset', level, 'dataset_id');

export const DATASET_ROUTES: readonly RouteDef[] = [
  {
    at: `POST ${V3}/datasets/create`, find: [experiments('EDIT')],
    deviation: `${UNCHECKED}; a dataset must be linked to at least one experiment, which is where its permission comes from`,
  },
  { at: `GET ${V3}/datasets/{dataset_id}`, find: [dataset('READ')], deviation: UNCHECKED },
  { at: `DELETE ${V3}/datasets/{dataset_id}`, find: [dataset('MANAGE')], invalidates: ['dataset'], deviation: UNCHECKED },
  { at: `POST ${V3}/datasets/search`, find: [experiments('READ')], deviation: `${UNCHECKED}; at least one experiment id is required` },
  { at: `GET ${V3}/datasets/search`, find: [experiments('READ')], deviation: `${UNCHECKED}; at least one experiment id is required` },
  { at: `PATCH ${V3}/datasets/{dataset_id}/tags`, find: [dataset('EDIT')], deviation: UNCHECKED },
  { at: `DELETE ${V3}/datasets/{dataset_id}/tags/{key}`, find: [dataset('EDIT')], deviation: UNCHECKED },
  { at: `POST ${V3}/datasets/{dataset_id}/records`, find: [dataset('EDIT')], deviation: UNCHECKED },
  { at: `GET ${V3}/datasets/{dataset_id}/records`, find: [dataset('READ')], deviation: UNCHECKED },
  { at: `DELETE ${V3}/datasets/{dataset_id}/records`, find: [dataset('EDIT')], deviation: UNCHECKED },
  { at: `GET ${V3}/datasets/{dataset_id}/experiment-ids`, find: [dataset('READ')], deviation: UNCHECKED },
  { at: `POST ${V3}/datasets/{dataset_id}/add-experiments`, find: [dataset('EDIT'), experiments('EDIT')], invalidates: ['dataset'], deviation: `${UNCHECKED}; both the dataset and the experiments are changed` },
  { at: `POST ${V3}/datasets/{dataset_id}/remove-experiments`, find: [dataset('EDIT'), experiments('EDIT')], invalidates: ['dataset'], deviation: `${UNCHECKED}; both the dataset and the experiments are changed` },
];

export const ISSUE_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V3}/issues`, find: [experiment('EDIT'), optional(run('READ', 'source_run_id'))], deviation: `${UNCHECKED}; the run it names as its source must be readable` },
  { at: `POST ${V3}/issues/search`, find: [experiment('READ')], deviation: `${UNCHECKED}; the experiment id is required (without it the search spans every experiment)` },
  { at: `GET ${V3}/issues/{issue_id}`, access: 'admin-only', deviation: `${UNCHECKED}; ${NO_MAPPING}` },
  { at: `PATCH ${V3}/issues/{issue_id}`, access: 'admin-only', deviation: `${UNCHECKED}; ${NO_MAPPING}` },
];

const SCORER_GRANTS = 'auth app: a scorer-level grant (else the default); mlgate has no scorer grants, so the experiment\'s level applies';

export const SCORER_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V3}/scorers/register`, find: [experiment('EDIT')] },
  { at: `GET ${V3}/scorers/list`, find: [experiment('READ')] },
  { at: `GET ${V3}/scorers/versions`, find: [experiment('READ')], deviation: SCORER_GRANTS },
  { at: `GET ${V3}/scorers/get`, find: [experiment('READ')], deviation: SCORER_GRANTS },
  { at: `DELETE ${V3}/scorers/delete`, find: [experiment('MANAGE')], deviation: SCORER_GRANTS },
  // Online scoring (Flask extras).
  { at: `GET ${V3}/scorers/online-configs`, access: 'admin-only', deviation: `${UNCHECKED}; addressed by scorer ids, and ${NO_MAPPING}` },
  { at: `PUT ${V3}/scorers/online-config`, find: [experiment('EDIT')], deviation: UNCHECKED },
];

const JOB_BY_ID = `auth app: the job's experiment, read from the job on the server; ${NO_MAPPING}`;

export const PROMPT_OPTIMIZATION_ROUTES: readonly RouteDef[] = [
  {
    at: `POST ${V3}/prompt-optimization/jobs`, find: [experiment('EDIT'), promptUri('READ', 'source_prompt_uri'), optional(datasetIn('READ', 'config.dataset_id'))],
    deviation: 'auth app: EDIT on the experiment only; the job reads the prompt it names (source_prompt_uri) and the evaluation dataset (config.dataset_id), so both must be readable',
  },
  { at: `POST ${V3}/prompt-optimization/jobs/search`, find: [experiment('READ')] },
  { at: `GET ${V3}/prompt-optimization/jobs/search`, find: [experiment('READ')] },
  { at: `GET ${V3}/prompt-optimization/jobs/{job_id}`, access: 'admin-only', deviation: JOB_BY_ID },
  { at: `POST ${V3}/prompt-optimization/jobs/{job_id}/cancel`, access: 'admin-only', deviation: JOB_BY_ID },
  { at: `DELETE ${V3}/prompt-optimization/jobs/{job_id}`, access: 'admin-only', deviation: JOB_BY_ID },
];
