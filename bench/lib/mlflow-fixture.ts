// The one run and experiment the bench's MLflow-shaped upstream knows, what it answers about them
// (in MLflow's JSON, as `GET runs/get` and `GET experiments/get` answer), and the policy file every
// gateway in the bench runs with. mlgate's authorization step asks the upstream for a run's
// experiment and the experiment's name and mlgate.* tags (src/authz/resolver.ts); with `{}` for an
// answer it would find no such run and refuse every log-metric with a 403.
//
// The bench user gets EDIT the way a team member does in the README's worked example: not as
// owner, not by a grant on the experiment, but from a group rule matching the experiment's name
// (the third rule, so the ones before it are tried first). `bench-admin` is an admin.

/** The run every log-metric body names (bench/load/lua/post-metric.lua and paced-client.ts carry the same literal). */
export const BENCH_RUN_ID = '4f2e9c1d8a7b4e3f9a1b2c3d4e5f6a7b';
export const BENCH_EXPERIMENT_ID = '1';
const BENCH_EXPERIMENT_NAME = 'team-ml/bench';
export const ADMIN_USER = 'bench-admin';

/** As the gateway's access log names the experiment it decided on. */
export const BENCH_RESOURCE = `experiment:${BENCH_EXPERIMENT_ID}`;

export const RUNS_GET = '/api/2.0/mlflow/runs/get';
export const EXPERIMENTS_GET = '/api/2.0/mlflow/experiments/get';

/** `GET runs/get?run_id=<BENCH_RUN_ID>` (MLflow 2.17's shape, trimmed to what a fresh run has). */
export const RUN_JSON = JSON.stringify({
  run: {
    info: {
      run_id: BENCH_RUN_ID,
      run_uuid: BENCH_RUN_ID,
      run_name: 'bench-run',
      experiment_id: BENCH_EXPERIMENT_ID,
      user_id: 'bench',
      status: 'RUNNING',
      start_time: 1700000000000,
      artifact_uri: `mlflow-artifacts:/${BENCH_EXPERIMENT_ID}/${BENCH_RUN_ID}/artifacts`,
      lifecycle_stage: 'active',
    },
    data: { tags: [{ key: 'mlflow.user', value: 'bench' }, { key: 'mlflow.runName', value: 'bench-run' }] },
    inputs: {},
  },
});

/** `GET experiments/get?experiment_id=1`: owned by someone else, with grants that do not name the bench user. */
export const EXPERIMENT_JSON = JSON.stringify({
  experiment: {
    experiment_id: BENCH_EXPERIMENT_ID,
    name: BENCH_EXPERIMENT_NAME,
    artifact_location: `mlflow-artifacts:/${BENCH_EXPERIMENT_ID}`,
    lifecycle_stage: 'active',
    last_update_time: 1700000000000,
    creation_time: 1700000000000,
    tags: [
      { key: 'mlgate.owner', value: 'carol' },
      { key: 'mlgate.grant.user.alice', value: 'READ' },
      { key: 'mlgate.grant.group.viewers', value: 'READ' },
    ],
  },
});

/** What MLflow answers for a run or experiment it does not have. */
export function notFoundJson(what: 'Run' | 'Experiment', id: string): string {
  return JSON.stringify({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: `${what} with id=${id} not found` });
}

/** The policy file (authz.policyFile) of every gateway the bench starts; src/authz/policy.ts has the schema. */
export const POLICY_YAML = `# Written by bench/lib/mlflow-fixture.ts.
groups:
  team-ml: [bench, carol]
  viewers: [bob]
admins: [${ADMIN_USER}]
rules:
  - { experiment: "team-a/*", users: [alice], level: EDIT }
  - { experiment: "*", groups: [viewers], level: READ }
  - { experiment: "team-ml/*", groups: [team-ml], level: EDIT }
default: NO_PERMISSIONS
`;

/**
 * A path outside MLflow's API that the upstream answers like log-metric (`{}`): the gateway
 * authenticates it and forwards it, but its authorization step finds no MLflow route there, so it
 * neither reads the body nor looks anything up. The nearest to "authorization off" the gateway has.
 */
/** MLflow's route for one metric, what the small-request cases POST. */
export const LOG_METRIC = '/api/2.0/mlflow/runs/log-metric';
export const NON_API_LOG_METRIC = '/bench-non-api/runs/log-metric';

/** The log-metric body (the same bytes as bench/load/lua/post-metric.lua sends). */
export const METRIC_BODY = JSON.stringify({ run_id: BENCH_RUN_ID, key: 'loss', value: 0.2513, timestamp: 1700000000000, step: 42 });
