// Grants managed by the people who hold MANAGE on a resource (not only admins): a JSON API under
// /-/api/permissions and a page at /-/permissions. Both write mlgate's grant tags in MLflow through
// the grants client; who may do what comes from an injected `levelOf`, the gateway's decision engine.
//
// Only authenticated requests get here (the pipeline authenticates every /-/ path but the public
// ones). Cross-site requests: a request authenticated by the session cookie that can change something
// must be same-origin, which the session step checks for every path, /-/ included. A browser that
// remembers a Basic password sends it cross-site too, so these routes check as well: the page's POST
// must be same-origin, and the API's PUT and DELETE (which an HTML form cannot send, and which need a
// CORS preflight the gateway never grants) are refused when they carry a foreign Origin.
//
// Workspaces (MLflow 3.10+ with --enable-workspaces): a call acts in the workspace its `workspace`
// query parameter or X-MLFLOW-WORKSPACE header names (the page: its form's field), the default one
// without. One the caller may not use (decide.ts mayUseWorkspace) is refused exactly as a resource
// that does not exist is, so the answer tells nothing about which workspaces exist.
import type { Upstream } from '../proxy/upstream-pool.ts';
import type { IncomingMessage } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { checkSameOrigin, externalOrigin } from '../auth/csrf.ts';
import type { Principal } from '../auth/principal.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import { noteAudit, type RequestContext } from '../context/request-context.ts';
import { mayUseWorkspace, type Subject } from '../authz/decide.ts';
import type { Grantee } from '../authz/grant-tags.ts';
import {
  describeGrantee,
  describeResource,
  granteeNameProblem,
  inWorkspaceWords,
  MlflowGrantsClient,
  parseGrantee,
  permissionsView,
  type MlflowResource,
  type PermissionsView,
} from '../authz/grants-client.ts';
import { atLeast, parsePermissionLevel, PERMISSION_LEVELS, type PermissionLevel } from '../authz/levels.ts';
import { MlflowError, type TaggedResource } from '../authz/mlflow-client.ts';
import type { MlflowServerInfo } from '../authz/mlflow-server-info.ts';
import type { CarrierKind } from '../authz/route-rule.ts';
import { DEFAULT_WORKSPACE, parseWorkspace, requestWorkspace, WORKSPACE_HEADER } from '../authz/workspace.ts';
import type { Logger } from '../log/logger.ts';
import { readBodyLimited } from './form-body.ts';
import { permissionsPage, PERMISSIONS_PAGE_HEADERS } from './permissions-page.ts';
import { messagePage, PAGE_HEADERS } from './pages.ts';

const PERMISSIONS_API = '/-/api/permissions';
const PERMISSIONS_PAGE = '/-/permissions';

/**
 * The principal's level on an experiment or registered model, in the workspace it was found in
 * (decide with ResourceInfo.workspace = info.workspace); the gateway's decision engine.
 */
export type PrincipalLevelOf = (principal: Principal, kind: CarrierKind, info: TaggedResource & { workspace: string }) => PermissionLevel | Promise<PermissionLevel>;

/** What the routes need of MLflow (MlflowGrantsClient has it all). */
export type GrantsStore = Pick<MlflowGrantsClient, 'origin' | 'find' | 'setGrant' | 'removeGrant' | 'experiments' | 'registeredModels' | 'workspacesEnabled'>;

export interface PermissionsDependencies {
  contextOf(req: IncomingMessage): RequestContext | undefined;
  grants: GrantsStore;
  levelOf: PrincipalLevelOf;
  /**
   * Called after a grant was written (or a write failed part-way), before the answer: cached
   * permissions of that resource are dropped, here and (state.redis) on every gateway.
   */
  grantsChanged?(resource: MlflowResource): void | Promise<void>;
  tls: boolean;
  proxies: TrustedProxies;
  logger: Logger;
  /** At most this many experiments, and as many registered models, are examined for "mine" (default 5000). */
  scanLimit?: number;
  /**
   * Whether the subject may use a workspace other than the default: the request path's answer
   * (its policy, and grants held there). Without it, the policy's alone (decide.ts mayUseWorkspace).
   */
  mayUseWorkspace?(subject: Subject, workspace: string): Promise<boolean>;
}

/** The usual wiring: MLflow at `upstream`, reached directly (as the gateway forwards). */
export function createPermissionsDependencies(options: Omit<PermissionsDependencies, 'grants'> & { upstream: Upstream; timeoutMs?: number; serverInfo?: MlflowServerInfo }): PermissionsDependencies {
  const { upstream, timeoutMs, serverInfo, ...rest } = options;
  return { ...rest, grants: new MlflowGrantsClient(upstream, { timeoutMs, serverInfo }) };
}

type Env = { Bindings: HttpBindings };

interface Failure {
  ok: false;
  status: 400 | 401 | 403 | 404 | 500 | 502 | 504;
  code: string;
  message: string;
}
type Outcome<T> = { ok: true; value: T } | Failure;

interface MineView {
  user: string;
  workspace: string;
  experiments: PermissionsView[];
  registered_models: PermissionsView[];
  /** More resources existed than were examined (scanLimit). */
  truncated: boolean;
}

const KIND_WORDS: Record<CarrierKind, string> = { experiment: 'experiment', 'registered-model': 'registered model' };
const DEFAULT_SCAN_LIMIT = 5000;
const BODY_LIMIT = 16 * 1024;

function fail(status: Failure['status'], code: string, message: string): Failure {
  return { ok: false, status, code, message };
}

/** Who asks, and in which workspace. */
interface Caller {
  principal: Principal;
  /** The principal as the policy sees them (the request context's); without it only the default workspace is theirs. */
  subject?: Subject;
  workspace: string;
}


/**
 * Looking up, checking and changing grants for one principal: shared by the API and the page, so
 * both refuse and answer alike.
 */
function permissionsService(deps: PermissionsDependencies) {
  const { grants, levelOf, logger } = deps;

  /** Throws MlflowError when the look-up of grants held in the workspace fails. */
  async function mayUse(caller: Caller): Promise<boolean> {
    if (caller.workspace === DEFAULT_WORKSPACE) return true;
    if (caller.subject === undefined) return false;
    return deps.mayUseWorkspace ? deps.mayUseWorkspace(caller.subject, caller.workspace) : mayUseWorkspace(caller.subject, caller.workspace);
  }

  async function refusedWorkspace(caller: Caller, hidden: Failure): Promise<Failure | undefined> {
    try {
      return await mayUse(caller) ? undefined : hidden;
    } catch (err) {
      return upstreamFailure(err);
    }
  }

  function upstreamFailure(err: unknown): Failure {
    if (!(err instanceof MlflowError)) throw err;
    if (err.code === 'INVALID_PARAMETER_VALUE') return fail(400, 'INVALID_PARAMETER_VALUE', err.message);
    if (err.code === 'RESOURCE_DOES_NOT_EXIST') return fail(404, 'RESOURCE_DOES_NOT_EXIST', err.message);
    return fail(err.code === 'TIMED_OUT' ? 504 : 502, 'TEMPORARILY_UNAVAILABLE', err.message);
  }

  /**
   * The resource, if the principal holds MANAGE on it. Missing, unreadable and in a workspace the
   * caller may not use answer alike: neither the resource's existence nor the workspace's is revealed.
   */
  async function managed(caller: Caller, kind: CarrierKind, ref: string): Promise<Outcome<MlflowResource>> {
    const { principal, workspace } = caller;
    const hidden = fail(404, 'RESOURCE_DOES_NOT_EXIST', `${KIND_WORDS[kind]} "${ref}"${inWorkspaceWords(workspace)} does not exist, or user ${principal.user} cannot read it`);
    const refused = await refusedWorkspace(caller, hidden);
    if (refused) return refused;
    let resource: MlflowResource | undefined;
    try {
      resource = await grants.find(kind, ref, workspace);
    } catch (err) {
      return upstreamFailure(err);
    }
    if (!resource) return hidden;
    const level = await levelOf(principal, kind, resource);
    if (!atLeast(level, 'READ')) return hidden;
    if (!atLeast(level, 'MANAGE')) {
      return fail(403, 'PERMISSION_DENIED', `user ${principal.user} has ${level} on ${describeResource(resource)}; managing its permissions needs MANAGE`);
    }
    return { ok: true, value: resource };
  }

  /** Reads the resource again after a change, so the answer shows what MLflow holds now. */
  async function reread(resource: MlflowResource): Promise<MlflowResource> {
    try {
      return (await grants.find(resource.kind, resource.kind === 'experiment' ? resource.id : resource.name, resource.workspace)) ?? resource;
    } catch {
      return resource;
    }
  }

  async function view(caller: Caller, kind: CarrierKind, ref: string): Promise<Outcome<PermissionsView>> {
    const found = await managed(caller, kind, ref);
    return found.ok ? { ok: true, value: permissionsView(found.value) } : found;
  }

  async function grant(caller: Caller, kind: CarrierKind, ref: string, grantee: Grantee, level: PermissionLevel, ctx?: RequestContext): Promise<Outcome<PermissionsView>> {
    const reqId = ctx?.id;
    const { principal } = caller;
    const found = await managed(caller, kind, ref);
    if (!found.ok) return found;
    try {
      await grants.setGrant(found.value, grantee, level);
    } catch (err) {
      await deps.grantsChanged?.(found.value);
      return upstreamFailure(err);
    }
    await deps.grantsChanged?.(found.value);
    logger.info({ reqId, user: principal.user, resource: describeResource(found.value), grantee: describeGrantee(grantee), level }, 'grant set');
    noteAudit(ctx, { event: 'grant-set', resource: describeResource(found.value), grantee: describeGrantee(grantee), level });
    return { ok: true, value: permissionsView(await reread(found.value)) };
  }

  async function revoke(caller: Caller, kind: CarrierKind, ref: string, grantee: Grantee, ctx?: RequestContext): Promise<Outcome<PermissionsView>> {
    const reqId = ctx?.id;
    const { principal } = caller;
    const found = await managed(caller, kind, ref);
    if (!found.ok) return found;
    let removed: boolean;
    try {
      removed = await grants.removeGrant(found.value, grantee);
    } catch (err) {
      await deps.grantsChanged?.(found.value);
      return upstreamFailure(err);
    }
    if (!removed) return fail(404, 'RESOURCE_DOES_NOT_EXIST', `${describeGrantee(grantee)} has no grant on ${describeResource(found.value)}; nothing was changed`);
    await deps.grantsChanged?.(found.value);
    logger.info({ reqId, user: principal.user, resource: describeResource(found.value), grantee: describeGrantee(grantee) }, 'grant revoked');
    noteAudit(ctx, { event: 'grant-revoked', resource: describeResource(found.value), grantee: describeGrantee(grantee) });
    return { ok: true, value: permissionsView(await reread(found.value)) };
  }

  /**
   * Every experiment and registered model of the workspace on which the principal holds MANAGE, with
   * its grants. A workspace that does not exist, or that the caller may not use, answers alike.
   */
  async function mine(caller: Caller): Promise<Outcome<MineView>> {
    const { principal, workspace } = caller;
    const hidden = fail(404, 'RESOURCE_DOES_NOT_EXIST', `workspace ${workspace} does not exist, or user ${principal.user} may not use it`);
    const refused = await refusedWorkspace(caller, hidden);
    if (refused) return refused;
    const limit = deps.scanLimit ?? DEFAULT_SCAN_LIMIT;
    let truncated = false;
    const collect = async (resources: AsyncGenerator<MlflowResource>): Promise<PermissionsView[]> => {
      const found: PermissionsView[] = [];
      let seen = 0;
      for await (const resource of resources) {
        if (seen++ >= limit) {
          truncated = true;
          break;
        }
        if (atLeast(await levelOf(principal, resource.kind, resource), 'MANAGE')) found.push(permissionsView(resource));
      }
      return found;
    };
    try {
      const experiments = await collect(grants.experiments(workspace));
      const models = await collect(grants.registeredModels(workspace));
      return { ok: true, value: { user: principal.user, workspace, experiments, registered_models: models, truncated } };
    } catch (err) {
      // MLflow's "Workspace 'x' not found".
      if (err instanceof MlflowError && err.code === 'RESOURCE_DOES_NOT_EXIST' && workspace !== DEFAULT_WORKSPACE) return hidden;
      return upstreamFailure(err);
    }
  }

  return { view, grant, revoke, mine };
}

/** Mounts /-/api/permissions and /-/permissions on the control app. */
export function registerPermissionRoutes(app: Hono<Env>, deps: PermissionsDependencies): void {
  const service = permissionsService(deps);

  const principalOf = (c: Context<Env>) => deps.contextOf(c.env.incoming)?.principal;
  const requestIdOf = (c: Context<Env>) => deps.contextOf(c.env.incoming)?.id;
  const contextFor = (c: Context<Env>) => deps.contextOf(c.env.incoming);
  const error = (c: Context<Env>, failure: Pick<Failure, 'status' | 'code' | 'message'>) => c.json({ error_code: failure.code, message: failure.message }, failure.status);
  const answer = <T>(c: Context<Env>, outcome: Outcome<T>) => (outcome.ok ? c.json(outcome.value as object) : error(c, outcome));
  const unauthenticated = fail(401, 'UNAUTHENTICATED', 'not signed in');

  /** A bug costs one request an MLflow-shaped 500 (with the request id), logged, never a bare "Internal Server Error". */
  const guarded = (handler: (c: Context<Env>) => Promise<Response>) => async (c: Context<Env>): Promise<Response> => {
    try {
      return await handler(c);
    } catch (err) {
      const reqId = requestIdOf(c);
      deps.logger.error({ reqId, err }, 'internal error in grant management');
      return error(c, { status: 500, code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${reqId})` });
    }
  };

  /** A state-changing call that names another site as its Origin (a browser sending a remembered password). */
  function foreignOrigin(c: Context<Env>): Failure | undefined {
    const req = c.env.incoming;
    if (req.headers.origin === undefined) return undefined;
    const check = checkSameOrigin(req, externalOrigin(req, deps.tls, deps.proxies).origin);
    return check.sameOrigin ? undefined : fail(403, 'PERMISSION_DENIED', `cross-site request refused: ${check.reason}`);
  }

  /**
   * The workspace a call names: the `workspace` query parameter (the page's form field instead,
   * when `field` is given) or the X-MLFLOW-WORKSPACE header, read as MLflow reads it; neither is the
   * default workspace. A name MLflow would refuse, or a parameter and a header that disagree: 400.
   */
  function workspaceOf(c: Context<Env>, field?: string): Outcome<string> {
    const { headers } = c.env.incoming;
    const fromHeader = requestWorkspace(headers);
    if (!fromHeader.ok) return fail(400, 'INVALID_PARAMETER_VALUE', fromHeader.reason);
    const given = field !== undefined ? [field] : c.req.queries('workspace') ?? [];
    if (given.length === 0) return { ok: true, value: fromHeader.workspace };
    if (given.length > 1) return fail(400, 'INVALID_PARAMETER_VALUE', 'name one workspace in the workspace parameter, not several');
    const parsed = parseWorkspace(given[0]!);
    if (!parsed.ok) return fail(400, 'INVALID_PARAMETER_VALUE', `workspace ${parsed.reason}`);
    if (headers[WORKSPACE_HEADER] !== undefined && parsed.workspace !== fromHeader.workspace) {
      return fail(400, 'INVALID_PARAMETER_VALUE', `the workspace parameter names workspace ${parsed.workspace}, the X-MLFLOW-WORKSPACE header ${fromHeader.workspace}; name one`);
    }
    return { ok: true, value: parsed.workspace };
  }

  /** Who asks (401 if nobody signed in), as the policy sees them, and in which workspace. */
  function callerOf(c: Context<Env>, field?: string): Outcome<Caller> {
    const ctx = deps.contextOf(c.env.incoming);
    if (!ctx?.principal) return unauthenticated;
    const workspace = workspaceOf(c, field);
    if (!workspace.ok) return workspace;
    return { ok: true, value: { principal: ctx.principal, subject: ctx.subject, workspace: workspace.value } };
  }

  function granteeFrom(kind: string, name: string): Outcome<Grantee> {
    const problem = granteeNameProblem(name);
    if (problem) return fail(400, 'INVALID_PARAMETER_VALUE', problem);
    return { ok: true, value: { kind: kind === 'groups' ? 'group' : 'user', name } };
  }

  /** What a PUT or DELETE of a grant needs before MLflow is asked: who asks, from this site, in which workspace, about what and whom. */
  function grantChange(c: Context<Env>): Outcome<{ caller: Caller; ref: string; grantee: Grantee }> {
    const caller = callerOf(c);
    if (!caller.ok) return caller;
    const foreign = foreignOrigin(c);
    if (foreign) return foreign;
    const grantee = granteeFrom(param(c, 'granteeKind'), param(c, 'grantee'));
    if (!grantee.ok) return grantee;
    return { ok: true, value: { caller: caller.value, ref: param(c, 'ref'), grantee: grantee.value } };
  }

  async function levelFromBody(c: Context<Env>): Promise<Outcome<PermissionLevel>> {
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) return fail(400, 'INVALID_PARAMETER_VALUE', 'Content-Type must be application/json');
    const text = await readLimited(c);
    if (text === undefined) return fail(400, 'INVALID_PARAMETER_VALUE', `the request body is larger than ${BODY_LIMIT} bytes`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return fail(400, 'INVALID_PARAMETER_VALUE', 'the request body is not valid JSON');
    }
    const given = typeof body === 'object' && body !== null ? (body as { level?: unknown }).level : undefined;
    const level = typeof given === 'string' ? parsePermissionLevel(given) : undefined;
    if (!level) return fail(400, 'INVALID_PARAMETER_VALUE', `"level" must be one of ${PERMISSION_LEVELS.join(', ')}; got ${JSON.stringify(given ?? null)}`);
    return { ok: true, value: level };
  }

  for (const [segment, kind] of [['experiments', 'experiment'], ['models', 'registered-model']] as const) {
    const base = `${PERMISSIONS_API}/${segment}/:ref`;
    const grantPath = `${base}/grants/:granteeKind{users|groups}/:grantee`;

    app.get(base, guarded(async (c) => {
      const caller = callerOf(c);
      if (!caller.ok) return error(c, caller);
      return answer(c, await service.view(caller.value, kind, param(c, 'ref')));
    }));

    app.put(grantPath, guarded(async (c) => {
      const change = grantChange(c);
      if (!change.ok) return error(c, change);
      const level = await levelFromBody(c);
      if (!level.ok) return error(c, level);
      const { caller, ref, grantee } = change.value;
      return answer(c, await service.grant(caller, kind, ref, grantee, level.value, contextFor(c)));
    }));

    app.delete(grantPath, guarded(async (c) => {
      const change = grantChange(c);
      if (!change.ok) return error(c, change);
      const { caller, ref, grantee } = change.value;
      return answer(c, await service.revoke(caller, kind, ref, grantee, contextFor(c)));
    }));
  }

  app.get(`${PERMISSIONS_API}/mine`, guarded(async (c) => {
    const caller = callerOf(c);
    if (!caller.ok) return error(c, caller);
    return answer(c, await service.mine(caller.value));
  }));

  // The page.

  const html = (c: Context<Env>, status: number, body: string, headers = PERMISSIONS_PAGE_HEADERS) => c.body(body, status as 200, { ...headers });

  async function renderPage(c: Context<Env>, caller: Caller, status: number, message: { notice?: string; error?: string }): Promise<Response> {
    const { principal, workspace } = caller;
    const mine = await service.mine(caller);
    // The workspace field only where there are workspaces (or one was named): without, the page is as it was.
    let workspaces = workspace !== DEFAULT_WORKSPACE;
    if (!workspaces) workspaces = await deps.grants.workspacesEnabled().catch(() => undefined) === true;
    const page = { user: principal.user, signOut: principal.method === 'session', workspace: workspaces ? workspace : undefined };
    if (!mine.ok) {
      return html(c, mine.status, permissionsPage({ ...page, experiments: [], models: [], truncated: false, error: message.error ?? mine.message }));
    }
    return html(c, status, permissionsPage({
      ...page,
      experiments: mine.value.experiments,
      models: mine.value.registered_models,
      truncated: mine.value.truncated,
      ...message,
    }));
  }

  /** The caller of a page request, in the workspace it names; a bad name is shown on the page of the default workspace. */
  async function pageCaller(c: Context<Env>, principal: Principal, field?: string): Promise<{ caller: Caller; refused?: Response }> {
    const caller = callerOf(c, field);
    if (caller.ok) return { caller: caller.value };
    const fallback: Caller = { principal, subject: deps.contextOf(c.env.incoming)?.subject, workspace: DEFAULT_WORKSPACE };
    const error = `${capitalise(caller.message)}${field === undefined ? '.' : '; nothing was changed.'}`;
    return { caller: fallback, refused: await renderPage(c, fallback, caller.status, { error }) };
  }

  /** A browser without a session is sent to sign in, not shown a password prompt. */
  const signInRequired = (c: Context<Env>) =>
    html(c, 401, messagePage('Sign-in required', 'Sign in to manage permissions.', { href: `/-/login?next=${encodeURIComponent(PERMISSIONS_PAGE)}`, text: 'Sign in' }), PAGE_HEADERS);

  const DONE: Record<string, string> = { granted: 'The grant was saved.', revoked: 'The grant was removed.' };

  app.get(PERMISSIONS_PAGE, guarded(async (c) => {
    const principal = principalOf(c);
    if (!principal) return signInRequired(c);
    const { caller, refused } = await pageCaller(c, principal);
    return refused ?? renderPage(c, caller, 200, { notice: DONE[c.req.query('done') ?? ''] });
  }));

  app.post(PERMISSIONS_PAGE, guarded(async (c) => {
    const principal = principalOf(c);
    if (!principal) return signInRequired(c);
    const req = c.env.incoming;
    const same = checkSameOrigin(req, externalOrigin(req, deps.tls, deps.proxies).origin);
    if (!same.sameOrigin) {
      deps.logger.info({ reqId: requestIdOf(c), user: principal.user, reason: same.reason }, 'cross-site permissions form refused');
      return html(c, 403, messagePage('Access denied', 'This form was sent from another site, so it was not accepted.', { href: PERMISSIONS_PAGE, text: 'Go to the permissions page' }), PAGE_HEADERS);
    }
    const raw = await readLimited(c);
    if (raw === undefined) return renderPage(c, { principal, subject: deps.contextOf(req)?.subject, workspace: DEFAULT_WORKSPACE }, 413, { error: 'The form sent was larger than a permissions form can be; nothing was changed.' });
    const form = new URLSearchParams(raw);
    const text = (name: string) => (form.get(name) ?? '').trim();
    const { caller, refused } = await pageCaller(c, principal, form.has('workspace') ? text('workspace') : undefined);
    if (refused) return refused;
    const action = text('action');
    const kind = text('kind');
    const ref = text('resource');
    if ((action !== 'grant' && action !== 'revoke') || (kind !== 'experiment' && kind !== 'registered-model') || ref === '') {
      return renderPage(c, caller, 400, { error: 'The form was incomplete; nothing was changed.' });
    }
    const parsed = parseGrantee(text('grantee'));
    if ('problem' in parsed) return renderPage(c, caller, 400, { error: `${capitalise(parsed.problem)}; nothing was changed.` });
    let outcome: Outcome<PermissionsView>;
    if (action === 'grant') {
      const level = parsePermissionLevel(text('level'));
      if (!level) return renderPage(c, caller, 400, { error: `Choose a level: ${PERMISSION_LEVELS.join(', ')}.` });
      outcome = await service.grant(caller, kind, ref, parsed.grantee, level, contextFor(c));
    } else {
      outcome = await service.revoke(caller, kind, ref, parsed.grantee, contextFor(c));
    }
    if (!outcome.ok) return renderPage(c, caller, outcome.status, { error: `${capitalise(outcome.message)}.` });
    // See Other: the browser follows with a GET, so reloading never sends the form again.
    const inWorkspace = caller.workspace === DEFAULT_WORKSPACE ? '' : `&workspace=${encodeURIComponent(caller.workspace)}`;
    return c.body(null, 303, { location: `${PERMISSIONS_PAGE}?done=${action === 'grant' ? 'granted' : 'revoked'}${inWorkspace}`, 'cache-control': 'no-store' });
  }));
}

/** The request body as text, or undefined past BODY_LIMIT bytes (with or without a Content-Length). */
async function readLimited(c: Context<Env>): Promise<string | undefined> {
  return (await readBodyLimited(c, BODY_LIMIT))?.toString('utf8');
}

/** A path parameter, decoded (`%2F` in an experiment name included). */
function param(c: Context<Env>, name: string): string {
  return (c.req.param as (key: string) => string | undefined)(name) ?? '';
}

function capitalise(text: string): string {
  const trimmed = text.replace(/\.$/, '');
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
}
