// The shape of the route table: what each MLflow route touches, where the request names it, and
// the level it needs. The tables themselves are data in routes-*.ts, written with the helpers at
// the end of this file so each line reads like the reference (mlflow-http-surface.md §3-§7).
import type { PermissionLevel } from './levels.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a request names. Everything but registered-model is resolved to the experiment that holds it. */
export type RefKind = 'experiment' | 'experiment-name' | 'run' | 'logged-model' | 'trace' | 'dataset' | 'registered-model' | 'artifact-path' | 'model-source' | 'prompt-uri' | 'workspace';

/**
 * Where a parameter travels.
 * - message: MLflow's RPC rule (handlers._get_request_message): GET takes the query string, or the
 *   JSON body when the query string is empty; every other method takes the JSON body, whatever its
 *   Content-Type, and ignores the query string.
 * - query: the query string only (Flask routes that read request.args).
 * - path: a parameter of the route template. - header: a request header.
 */
export type ParamSource = 'message' | 'query' | 'path' | 'header';

export interface ResourceSpec {
  ref: RefKind;
  from: ParamSource;
  /** `[]` marks a list (a repeated query key or a JSON array); dots walk into JSON objects. */
  field: string;
  /** Read when `field` is absent or empty, as handlers do with the legacy `run_uuid`. */
  fallback?: string;
  level: PermissionLevel;
  /** Absent means nothing to check; otherwise absent is a 400, as MLflow's own check would be. */
  optional?: boolean;
  /** For a path parameter: the message field that names the same thing; if given, it must agree. */
  twin?: string;
  /**
   * The id may name a new resource (a create that brings its own id, as StartTraceV3 does): nothing
   * to check if none exists; if one does, `level` is needed on it where it is now.
   */
  ifExists?: boolean;
}

/** The resources that carry permissions; everything else inherits from one of them. */
export type CarrierKind = 'experiment' | 'registered-model';

/**
 * Routes decided without a resource:
 * - public: MLflow itself asks no credentials (/health).
 * - none: any authenticated user.
 * - admin-only: the gateway cannot tell whose resource the route touches (GraphQL, AI gateway
 *   configuration, jobs, the upstream's own user database...), so only admins may call it.
 * - blocked: no one, admins included: the upstream trusts callers it takes for local, and behind
 *   a gateway every caller looks local.
 */
export type Access = 'public' | 'none' | 'admin-only' | 'blocked';

/** Search responses to drop unreadable entries from, like the auth app's after-request handlers. */
export type ResponseFilter = 'experiments' | 'registered-models' | 'model-versions' | 'logged-models' | 'workspaces';

/** A parameter holding a path MLflow joins to an artifact root: `relative` to it, or a `file-name` it appends. */
export interface PathCheck {
  from: 'message' | 'query';
  field: string;
  kind: 'relative' | 'file-name';
}

/** The user MLflow records a run under (its UI shows this tag first, then user_id). */
export const RUN_USER_TAG = 'mlflow.user';

/** A run's tags: the user it was created by is mlgate's to set (stampsUser). */
export const RUN_TAGS = (keyField: string) => ({
  on: 'run', keyField, adminOnly: { key: RUN_USER_TAG, why: 'mlgate sets it to the user who created the run' },
}) as const;

interface RouteFacts {
  filter?: ResponseFilter;
  /** The gateway adds the owner tag to the forwarded create body. */
  creates?: CarrierKind;
  /**
   * Tag keys this route writes or deletes. On experiments and models `mlgate.` keys are reserved
   * (grant-tags.ts); elsewhere `adminOnly` names the one key no one but admins may write there, and why.
   */
  writesTags?: { on: CarrierKind | 'run' | 'trace'; keyField: string; adminOnly?: { key: string; why: string } };
  /** A new name means other policy rules (name globs) may apply to the resource afterwards. */
  renames?: { on: CarrierKind; newNameField: string };
  /** The gateway sets `user_id` and the RUN_USER_TAG tag to the authenticated user. */
  stampsUser?: boolean;
  /**
   * What the gateway remembers about the resources of these kinds this route names stops being
   * true once it runs (deletes, restores, links); creates, renames and tag writes say so already.
   */
  invalidates?: readonly ('experiment' | 'registered-model' | 'dataset')[];
  checksPaths?: readonly PathCheck[];
  /**
   * Message fields only admins may set (non-empty): where MLflow will write or read a resource's
   * files, which no name or id the gateway checks can vouch for.
   */
  adminOnlyFields?: readonly { field: string; why: string }[];
  /**
   * The body names more trace ids than the table's fields can say: `start-trace` (the assessments of
   * StartTraceV3), `otlp` (an OTLP export, protobuf, maybe compressed). See routes-traces.ts.
   */
  namesTraces?: 'start-trace' | 'otlp';
  /** Where and why the rule differs from MLflow's auth app (reviewers: read these first). */
  deviation?: string;
}

/**
 * One table line as written: `at` is "METHOD template". `{a,b}` gives alternatives (of methods or
 * path parts, as the reference writes `{api,ajax-api}`); `{name}` is one path segment, `{name...}`
 * the rest of the path; ANY matches every method.
 */
export type RouteDef = RouteFacts & { at: string } & ({ find: readonly ResourceSpec[]; access?: never } | { access: Access; find?: never });

export interface RouteRule extends RouteFacts {
  /** Short name for messages and logs, e.g. "runs/log-metric". */
  name: string;
  /** The table's family, e.g. "runs" (route-table.ts ROUTE_FAMILIES): a bounded metrics label. */
  family: string;
  method: HttpMethod | 'ANY';
  /** One expansion of the table line's template, e.g. "/ajax-api/2.0/mlflow/logged-models/{model_id}". */
  template: string;
  /** The permission-carrying resource (of the first check), or how the route is decided without one. */
  /** A workspace route's resource is the workspace itself (MLflow 3 --enable-workspaces). */
  resource: CarrierKind | 'workspace' | Access;
  /** The level the first check needs; undefined when `resource` is not a carrier. */
  level: PermissionLevel | undefined;
  find: readonly ResourceSpec[];
  /** Checking needs the request's JSON message: its resource ids, tag keys, names or paths (see needsRequestBody). */
  readsMessage: boolean;
}

export function carrierOf(ref: RefKind): CarrierKind | 'workspace' {
  return ref === 'registered-model' || ref === 'workspace' ? ref : 'experiment';
}

// Helpers that keep each table line short. `from` defaults to the MLflow RPC rule.

export const experiment = (level: PermissionLevel, field = 'experiment_id', from: ParamSource = 'message'): ResourceSpec => ({ ref: 'experiment', from, field, level });
export const experiments = (level: PermissionLevel, field = 'experiment_ids[]'): ResourceSpec => ({ ref: 'experiment', from: 'message', field, level });
export const experimentNamed = (level: PermissionLevel, field: string): ResourceSpec => ({ ref: 'experiment-name', from: 'message', field, level });
export const run = (level: PermissionLevel, field = 'run_id', from: ParamSource = 'message'): ResourceSpec => ({ ref: 'run', from, field, level });
/** Handlers whose message has the legacy field read `run_id or run_uuid`. */
export const runOrUuid = (level: PermissionLevel, from: ParamSource = 'message'): ResourceSpec => ({ ref: 'run', from, field: 'run_id', fallback: 'run_uuid', level });
export const runs = (level: PermissionLevel, field: string, from: ParamSource = 'message'): ResourceSpec => ({ ref: 'run', from, field, level });
export const registeredModel = (level: PermissionLevel, field = 'name', from: ParamSource = 'message'): ResourceSpec => ({ ref: 'registered-model', from, field, level });
export const loggedModel = (level: PermissionLevel, field: string, from: ParamSource = 'message'): ResourceSpec => ({ ref: 'logged-model', from, field, level });
export const trace = (level: PermissionLevel, field: string, from: ParamSource = 'message'): ResourceSpec => ({ ref: 'trace', from, field, level });
export const artifactInMessage = (level: PermissionLevel, field = 'path'): ResourceSpec => ({ ref: 'artifact-path', from: 'message', field, level });
export const artifactInPath = (level: PermissionLevel): ResourceSpec => ({ ref: 'artifact-path', from: 'path', field: 'artifact_path', level });
/**
 * A model version's `source`, where MLflow reads the version's artifacts from (/model-versions/get-artifact,
 * get-download-uri): a proxied artifact path names its experiment, `runs:/` a run, `models:/` a registered
 * model (or, on 3.x, a logged model). Other URIs name nothing the gateway can look up (see extract-params.ts).
 */
export const modelSource = (level: PermissionLevel, field = 'source'): ResourceSpec => ({ ref: 'model-source', from: 'message', field, level, optional: true });
/** A prompt named by URI (`prompts:/<name>/<version>`, `prompts:/<name>@<alias>`): the registered model that holds it. */
export const promptUri = (level: PermissionLevel, field: string): ResourceSpec => ({ ref: 'prompt-uri', from: 'message', field, level });
export const datasetIn = (level: PermissionLevel, field: string): ResourceSpec => ({ ref: 'dataset', from: 'message', field, level });

/** A path parameter; `twin` is the field of MLflow's message that names the same thing (false: none, a Flask route). */
export const inPath = (ref: RefKind, level: PermissionLevel, param: string, twin: string | false = param): ResourceSpec =>
  twin === false ? { ref, from: 'path', field: param, level } : { ref, from: 'path', field: param, level, twin };

export const optional = (spec: ResourceSpec): ResourceSpec => ({ ...spec, optional: true });
