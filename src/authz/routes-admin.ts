// Routes only admins may call: no experiment or registered model tells whose they are
// (reference §3 "Webhooks", "Workspaces", "AI Gateway configuration", §4 extras, §5, §7.8).
import { inPath, type RouteDef } from './route-rule.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';
const V3 = '/{api,ajax-api}/3.0/mlflow';

export const WEBHOOK_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V2}/webhooks`, access: 'admin-only' },
  { at: `GET ${V2}/webhooks`, access: 'admin-only' },
  { at: `GET ${V2}/webhooks/{webhook_id}`, access: 'admin-only' },
  { at: `PATCH ${V2}/webhooks/{webhook_id}`, access: 'admin-only' },
  { at: `DELETE ${V2}/webhooks/{webhook_id}`, access: 'admin-only' },
  { at: `POST ${V2}/webhooks/{webhook_id}/test`, access: 'admin-only' },
];

// Like the auth app: the list shows the workspaces the user may use, and one is read by its users
// (decide.ts mayUseWorkspace); making, changing and deleting them is for admins.
const POLICY_MEMBERS = 'auth app: members by its own grants; mlgate: the users its policy lets use the workspace';

export const WORKSPACE_ROUTES: readonly RouteDef[] = [
  { at: `GET ${V3}/workspaces`, access: 'none', filter: 'workspaces', deviation: POLICY_MEMBERS },
  { at: `POST ${V3}/workspaces`, access: 'admin-only' },
  { at: `GET ${V3}/workspaces/{workspace_name}`, find: [inPath('workspace', 'READ', 'workspace_name', false)], deviation: POLICY_MEMBERS },
  { at: `PATCH ${V3}/workspaces/{workspace_name}`, access: 'admin-only' },
  { at: `DELETE ${V3}/workspaces/{workspace_name}`, access: 'admin-only' },
];

const AI_GATEWAY = 'auth app: per-object grants (READ/USE/EDIT/MANAGE on secrets, endpoints, model definitions), some routes unchecked; mlgate has no grants on these, and they hold provider credentials';

export const AI_GATEWAY_ROUTES: readonly RouteDef[] = [
  // Secrets, endpoints, model definitions, bindings, budgets (RPCs, both prefixes), the UI's provider
  // catalogue (/ajax-api only) and the auth app's grant routes on them (/api only): all of it.
  { at: `ANY ${V3}/gateway/{rest...}`, access: 'admin-only', deviation: AI_GATEWAY },
  // Invocation endpoints (FastAPI): chat, embeddings, per-provider passthrough, /<endpoint>/mlflow/invocations.
  { at: 'ANY /gateway/{rest...}', access: 'admin-only', deviation: `auth app: USE on the endpoint; ${AI_GATEWAY}` },
  {
    at: '{GET,POST} /ajax-api/2.0/mlflow/gateway-proxy', access: 'admin-only',
    deviation: 'auth app: any authenticated user; it forwards any gateway_path to the deployments server',
  },
  {
    at: 'POST /ajax-api/3.0/mlflow/scorer/invoke', access: 'admin-only',
    deviation: 'auth app: any authenticated user; it calls models through the AI gateway, which is admin-only here',
  },
  {
    at: 'POST /ajax-api/3.0/mlflow/issues/invoke', access: 'admin-only',
    deviation: 'auth app: unchecked; it calls models through the AI gateway (secret_id, endpoint_name), which is admin-only here',
  },
];

const UNMAPPED_JOBS = 'auth app: unchecked; a job id leads to no experiment the gateway can look up';

export const JOB_ROUTES: readonly RouteDef[] = [
  { at: 'GET /ajax-api/3.0/mlflow/jobs/{job_id}', access: 'admin-only', deviation: UNMAPPED_JOBS },
  { at: 'PATCH /ajax-api/3.0/mlflow/jobs/cancel/{job_id}', access: 'admin-only', deviation: UNMAPPED_JOBS },
  // FastAPI job API (uvicorn only).
  { at: 'GET /ajax-api/3.0/jobs/{job_id}', access: 'admin-only', deviation: UNMAPPED_JOBS },
  { at: 'POST /ajax-api/3.0/jobs/', access: 'admin-only', deviation: UNMAPPED_JOBS },
  { at: 'PATCH /ajax-api/3.0/jobs/cancel/{job_id}', access: 'admin-only', deviation: UNMAPPED_JOBS },
  { at: 'POST /ajax-api/3.0/jobs/search', access: 'admin-only', deviation: UNMAPPED_JOBS },
  { at: 'POST /ajax-api/3.0/mlflow/demo/{generate,delete}', access: 'admin-only', deviation: 'auth app: unchecked; it creates and deletes experiments and models wholesale' },
];

/** The upstream's own user database and grants (--app-name basic-auth); mlgate's are under /-/api/permissions. */
const UPSTREAM_AUTH = 'auth app: MANAGE on the resource, or self for users/get and update-password; mlgate manages permissions itself';

export const UPSTREAM_AUTH_ROUTES: readonly RouteDef[] = [
  { at: 'GET /signup', access: 'admin-only' },
  { at: 'POST /api/2.0/mlflow/users/{create,create-ui}', access: 'admin-only' },
  { at: 'GET /api/2.0/mlflow/users/get', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'GET /{api,ajax-api}/2.0/mlflow/users/list', access: 'admin-only' },
  { at: 'PATCH /api/2.0/mlflow/users/update-password', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'PATCH /api/2.0/mlflow/users/update-admin', access: 'admin-only' },
  { at: 'DELETE /api/2.0/mlflow/users/delete', access: 'admin-only' },
  { at: 'POST /api/2.0/mlflow/{experiments,registered-models}/permissions/create', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'GET /api/2.0/mlflow/{experiments,registered-models}/permissions/get', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'PATCH /api/2.0/mlflow/{experiments,registered-models}/permissions/update', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'DELETE /api/2.0/mlflow/{experiments,registered-models}/permissions/delete', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'POST /api/3.0/mlflow/scorers/permissions/create', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'GET /api/3.0/mlflow/scorers/permissions/get', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'PATCH /api/3.0/mlflow/scorers/permissions/update', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'DELETE /api/3.0/mlflow/scorers/permissions/delete', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: '{GET,POST,DELETE} /api/3.0/mlflow/workspaces/{workspace_name}/permissions', access: 'admin-only', deviation: UPSTREAM_AUTH },
  { at: 'GET /api/3.0/mlflow/workspace-permissions', access: 'admin-only' },
];
