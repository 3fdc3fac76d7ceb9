// Routes MLflow added after 3.11.1, as far as they could be rebuilt (about 3.13-3.16; see
// docs/mlflow-versions.md and test/fixtures/mlflow-newest-routes.json). A route is checked on its
// experiment or run where the request names one the way an RPC does; it is admin-only where only an
// id the gateway cannot map (a schema id, an MCP server name, a role) names what it touches. The
// auth app's validators quoted here are those of MLflow's RBAC-era mlflow/server/auth/__init__.py.
// Not here: the review-queue RPCs whose method and path are unknown (they stay unknown routes, so
// fail closed), and the guardrail routes, which the AI gateway rule (routes-admin.ts) already covers.
import { experiment, run, type RouteDef } from './route-rule.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';
const V3 = '/{api,ajax-api}/3.0/mlflow';
const NO_VALIDATOR = 'auth app: no validator (unchecked, or refused to non-admins when its fail-closed mode is on, the 3.16 default)';

export const PRESIGNED_UPLOAD_ROUTES: readonly RouteDef[] = [
  {
    at: `POST ${V2}/artifacts/presigned-upload-url`, find: [run('EDIT')],
    checksPaths: [{ from: 'message', field: 'path', kind: 'relative' }],
    deviation: `${NO_VALIDATOR}; it signs a URL that writes a file into the run's artifacts, so EDIT on the run as for upload-artifact, and the path must stay inside them`,
  },
];

const BY_SCHEMA_ID = (level: string) => `auth app: ${level} on the experiment of the schema, which it reads from the schema on the server; the gateway cannot map a schema id to its experiment`;

export const LABEL_SCHEMA_ROUTES: readonly RouteDef[] = [
  // validate_can_create_label_schema: MANAGE on experiment_id.
  { at: `POST ${V3}/label-schemas/create`, find: [experiment('MANAGE')] },
  { at: `GET ${V3}/label-schemas/get-by-name`, find: [experiment('READ')] },
  { at: `GET ${V3}/label-schemas/list`, find: [experiment('READ')] },
  {
    at: `POST ${V3}/label-schemas/upsert`, find: [experiment('MANAGE')],
    deviation: `${NO_VALIDATOR}; it creates or replaces a schema of the experiment, and the auth app asks MANAGE for both`,
  },
  { at: `GET ${V3}/label-schemas/get`, access: 'admin-only', deviation: BY_SCHEMA_ID('READ') },
  { at: `PATCH ${V3}/label-schemas/update`, access: 'admin-only', deviation: BY_SCHEMA_ID('MANAGE') },
  { at: `DELETE ${V3}/label-schemas/delete`, access: 'admin-only', deviation: BY_SCHEMA_ID('MANAGE') },
];

export const REVIEW_QUEUE_ROUTES: readonly RouteDef[] = [
  {
    at: `GET ${V3}/review-queues/list`, find: [experiment('EDIT')],
    deviation: 'auth app: READ on the experiment, with the list narrowed to the queues a caller below EDIT is assigned to '
      + '(filter_list_review_queues); mlgate does not narrow this response, so it asks EDIT, at which MLflow lists every queue too',
  },
];

const MCP = 'auth app: not read (FastAPI middleware); MCP servers, their versions and access endpoints belong to no experiment or registered model';

export const MCP_REGISTRY_ROUTES: readonly RouteDef[] = [
  // FastAPI: `{name:path}` takes slashes (reverse-DNS names), and FastAPI picks the first declared
  // route that matches, so a path cannot be split into name and sub-resource here: every method and
  // every path under the prefix (the empty name included) is one rule.
  { at: `ANY ${V3}/mcp-servers`, access: 'admin-only', deviation: MCP },
  { at: `ANY ${V3}/mcp-servers/`, access: 'admin-only', deviation: MCP },
  { at: `ANY ${V3}/mcp-servers/{rest...}`, access: 'admin-only', deviation: MCP },
];

/** MLflow's RBAC (3.13+): exists only when MLflow runs its own auth app; mlgate's permissions are its own (/-/api/permissions). */
const rbac = (who: string) => `auth app: ${who}; mlgate manages permissions itself, and MLflow's roles and grants do not apply behind it`;
const MANAGE_ROLES = rbac('validate_can_manage_roles');
const VIEW_ROLES = rbac('validate_can_view_roles');
const VIEW_USER_ROLES = rbac('validate_can_view_user_roles (self, or a workspace admin)');
const THE_CALLER = 'auth app: any authenticated user, about themselves; behind mlgate MLflow would describe its own user or none, '
  + 'not the caller (mlgate\'s users and grants are not MLflow\'s)';

export const UPSTREAM_RBAC_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V3}/roles/{create,assign}`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `GET ${V3}/roles/get`, access: 'admin-only', deviation: VIEW_ROLES },
  { at: `GET ${V3}/roles/list`, access: 'admin-only', deviation: rbac('validate_can_list_roles') },
  { at: `PATCH ${V3}/roles/update`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `DELETE ${V3}/roles/{delete,unassign}`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `POST ${V3}/roles/permissions/add`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `DELETE ${V3}/roles/permissions/remove`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `PATCH ${V3}/roles/permissions/update`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `GET ${V3}/roles/permissions/list`, access: 'admin-only', deviation: VIEW_ROLES },
  { at: `GET ${V3}/roles/users/list`, access: 'admin-only', deviation: MANAGE_ROLES },
  { at: `GET ${V3}/users/roles/list`, access: 'admin-only', deviation: VIEW_USER_ROLES },
  { at: `POST ${V3}/users/permissions/{grant,revoke}`, access: 'admin-only', deviation: rbac('validate_can_manage_resource (MANAGE on the target resource)') },
  { at: `GET ${V3}/users/permissions/get`, access: 'admin-only', deviation: rbac('validate_can_get_user_permission') },
  { at: `GET ${V3}/users/permissions/list`, access: 'admin-only', deviation: VIEW_USER_ROLES },
  { at: `GET ${V3}/users/current/permissions`, access: 'admin-only', deviation: THE_CALLER },
  { at: `GET ${V2}/users/current`, access: 'admin-only', deviation: THE_CALLER },
];
