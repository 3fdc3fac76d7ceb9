// The authorization step of the request path: after authentication, before forwarding.
//
//   canonical target (400 if ambiguous) -> the workspace (X-MLFLOW-WORKSPACE as MLflow reads it; 400
//   if MLflow would refuse it, 403 if the user may not use it) -> route rule (unknown API route: 403 unless admin or
//   authz.allowUnknownRoutes) -> admin-only / blocked -> read the JSON body if the check needs it
//   (authz.maxCheckedBody, 413 beyond) -> the resources it names (400 as MLflow would) -> reserved
//   tags (mlgate.*, mlflow.user) -> each resource resolved through the upstream and decided
//   (decide.ts), a few at a time in order, stopping at the first denial, with at most
//   authz.maxLookupsPerRequest look-ups not already cached (400 beyond) -> 403 in MLflow's JSON, or the go-ahead with the exact bytes to forward (the body
//   as read, or as rebuilt with the owner tag / the run's user).
//
// Admins skip the resource checks but not the rest: their creates get the owner tag, their runs
// the authenticated user, and their unparseable requests the same 400.
import type { IncomingMessage } from 'node:http';
import type { Principal } from '../auth/principal.ts';
import type { RequestContext } from '../context/request-context.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import type { Logger } from '../log/logger.ts';
import { canonicalizeTarget, type CanonicalTarget } from './canonical-path.ts';
import { levelOf, mayUseWorkspace, resourceInfoFromTags, type LevelDecision, type ResourceInfo, type Subject } from './decide.ts';
import { extractResources, hasQueryParams, MAX_IDS_PER_REQUEST, parseRequestJson, type ExtractedResources, type ResourceCheck } from './extract-params.ts';
import { filterSearchResponseBytes, type SearchAccess } from './search-filter.ts';
import { isReservedTag, OWNER_TAG } from './grant-tags.ts';
import { atLeast, levelRank, type PermissionLevel } from './levels.ts';
import type { Policy } from './policy.ts';
import { decodeBody } from './otlp-body.ts';
import { otlpTraceIds } from './otlp-trace-ids.ts';
import { readRequestBody, type BodyBudget } from './read-body.ts';
import { messageProblem, requestMessageOf } from './request-message.ts';
import { jsonObject, MlflowError } from './mlflow-client.ts';
import { LookupBoundError, LookupBudget, missingExperiment, type Resolver } from './resolver.ts';
import { RUN_USER_TAG, type RouteRule } from './route-rule.ts';
import { matchRule, needsRequestBody } from './route-table.ts';
import { assessmentTraceIds } from './routes-traces.ts';
import { DEFAULT_WORKSPACE, requestWorkspace } from './workspace.ts';
import type { GrantChange } from '../state/grant-invalidation.ts';

interface AuthorizerOptions {
  /** The policy in force (a PolicyStore). */
  policy: { current(): Policy };
  resolver: Resolver;
  /** authz.allowUnknownRoutes: forward /api/ routes the table does not know for everyone, not only admins. */
  allowUnknownRoutes: boolean;
  /** authz.maxCheckedBody: largest JSON body read for a check. */
  maxCheckedBody: number;
  /** authz.maxDecompressedBody: largest size a compressed body the gateway reads may decompress to (default 64 MiB); 413 beyond. */
  maxDecompressedBody?: number;
  /** authz.maxLookupsPerRequest: most upstream look-ups one request may start (default 100); 400 beyond. */
  maxLookupsPerRequest?: number;
  /** Memory for bodies read whole to check them, across requests (limits.checkedBodyBudget). */
  bodyBudget: BodyBudget;
  /**
   * Whether the upstream MLflow acts in the workspace a request names (server-info's
   * workspaces_enabled; undefined: cannot tell now). MLflow 2.x ignores the header, so a request
   * naming a workspace would be decided in one and carried out in the default one.
   */
  workspacesEnabled(): Promise<boolean | undefined>;
  /** A resource's grants or owner changed: dropped here and announced to the other gateways (state.redis). */
  grantsChanged?(change: GrantChange): Promise<void>;
  logger: Logger;
}

/**
 * Forward (with `body`: exactly these bytes, already read from the client; with `filterResponse`:
 * a 2xx answer rewritten by it, search results without what the user may not read), or answer
 * `error`, or nothing: the client left while its body was read.
 */
export type AccessDecision =
  | { ok: true; body?: Buffer; filterResponse?: (answer: Buffer) => Promise<Buffer> }
  | { ok: false; error: GatewayError }
  | { ok: false; clientLeft: true };

export interface Authorizer {
  /**
   * Decides a request on an MLflow route that passed authentication (ctx.subject set). Sets
   * ctx.resource for the access log; work for after the answer goes in ctx.atEnd.
   */
  authorize(req: IncomingMessage, ctx: RequestContext): Promise<AccessDecision>;
  /** WebSocket upgrades: MLflow has none, so MLflow's routes take no upgrade but from admins. */
  authorizeUpgrade(ctx: RequestContext): GatewayError | undefined;
  /**
   * Whether the subject may use the workspace: the policy says so (decide.ts mayUseWorkspace), or
   * they own or hold a grant on something there (looked up, cached). Throws MlflowError when the
   * look-up fails.
   */
  mayUseWorkspace(subject: Subject, workspace: string): Promise<boolean>;
}

/**
 * Paths MLflow serves under --static-prefix (`/<prefix>/ajax-api/...`, `/<prefix>/get-artifact`,
 * `/<prefix>/graphql`) look like no API path to the gateway, which knows no prefix: such paths are
 * treated as unknown API routes rather than passed through unchecked.
 */
const PREFIXED_API = /\/(?:api|ajax-api)\/\d+\.\d+(?:\/|$)|\/(?:get-artifact|graphql)$/;

type JsonObject = Record<string, unknown>;

/** Whether a location is the root itself or below it (whole path segments; trailing slashes ignored). */
function isInside(uri: string, root: string): boolean {
  const base = root.replace(/\/+$/, '');
  return base !== '' && (uri.replace(/\/+$/, '') === base || uri.startsWith(`${base}/`));
}

/** A search's max_results as MLflow reads it (a number, or digits in a query string), or undefined. */
function maxResultsOf(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

interface CheckOutcome {
  decision: LevelDecision;
  /** How the message names the resource: the experiment once the user may read it, else what the request named. */
  label: string;
  /** For the access log: `experiment:12`, `model:churn`, `run:abc` (when it does not exist). */
  logName: string;
}

/**
 * Checks decided at once: a request naming many resources is decided a few at a time, in order, and
 * the first denial stops the rest (no look-ups for them).
 */
const CHECKS_AT_ONCE = 8;

const NOT_FOUND: LevelDecision = Object.freeze({ level: 'NO_PERMISSIONS', reason: 'no such resource' });
/** A check with ifExists whose id names nothing yet: the request creates it (where the route's other checks say). */
const NEW_ID: LevelDecision = Object.freeze({ level: 'MANAGE', reason: 'a new id: nothing exists by it yet' });

const ALLOWED: AccessDecision = Object.freeze({ ok: true });

/** limits.checkedBodyBudget is spent: a moment later there is room again. */
const BUSY: GatewayError = Object.freeze({
  status: 503,
  code: 'TEMPORARILY_UNAVAILABLE',
  message: 'the gateway is checking too many request bodies at once (limits.checkedBodyBudget); retry shortly',
  headers: { 'retry-after': '2' },
});

function denied(message: string): AccessDecision {
  return { ok: false, error: { status: 403, code: 'PERMISSION_DENIED', message } };
}

function badRequest(message: string): AccessDecision {
  return { ok: false, error: { status: 400, code: 'INVALID_PARAMETER_VALUE', message } };
}


export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  const { resolver, logger } = options;

  /** Authorizer.mayUseWorkspace. A server without workspaces holds no grants in any (and would refuse the search). */
  async function mayUse(subject: Subject, workspace: string): Promise<boolean> {
    if (mayUseWorkspace(subject, workspace)) return true;
    if (workspace === DEFAULT_WORKSPACE || await options.workspacesEnabled() !== true) return false;
    return resolver.inWorkspace(workspace).holdsGrant(subject.principal.user, subject.groups);
  }

  /**
   * A resource named by id that does not exist: NO_PERMISSIONS, the level of one the user may not
   * see, so that both get the same 403 and the answer tells nothing about which ids exist. (By
   * name, policy rules still apply: `mlflow.set_experiment` needs its 404 for a new name.)
   */
  function levelByIdOf(subject: Subject, info: ResourceInfo): LevelDecision {
    return info.exists ? levelOf(subject, info) : NOT_FOUND;
  }

  /**
   * The level on the resource a check names, resolved to the experiment or model that carries it,
   * through `resolver`: the request's view of the resolver, charging its look-up budget.
   */
  async function outcomeOf(subject: Subject, check: ResourceCheck, resolver: Resolver): Promise<CheckOutcome> {
    const resolveExperiment = (id: string) => resolver.experiment(id);
    const { ref } = check;
    switch (ref.kind) {
      case 'experiment': {
        const decision = levelByIdOf(subject, await resolveExperiment(ref.id));
        return { decision, label: `experiment ${ref.id}`, logName: `experiment:${ref.id}` };
      }
      case 'artifact-path': {
        const decision = levelByIdOf(subject, await resolveExperiment(ref.experimentId));
        return { decision, label: `experiment ${ref.experimentId}`, logName: `experiment:${ref.experimentId}` };
      }
      case 'experiment-name': {
        const info = await resolver.experimentByName(ref.name);
        const decision = levelOf(subject, info);
        return { decision, label: `experiment ${JSON.stringify(ref.name)}`, logName: info.id !== undefined ? `experiment:${info.id}` : `experiment-name:${ref.name}` };
      }
      case 'workspace': {
        // The same words whether it exists or not: whether the user may use it is the policy's to say.
        const decision: LevelDecision = await mayUse(subject, ref.name) ? { level: 'READ', reason: 'may use it' } : { level: 'NO_PERMISSIONS', reason: 'may not use it' };
        return { decision, label: `workspace ${ref.name}`, logName: `workspace:${ref.name}` };
      }
      case 'registered-model': {
        const decision = levelOf(subject, await resolver.registeredModel(ref.name));
        return { decision, label: `registered model ${JSON.stringify(ref.name)}`, logName: `model:${ref.name}` };
      }
      case 'run':
      case 'logged-model':
      case 'trace': {
        const experimentId = ref.kind === 'run' ? await resolver.experimentOfRun(ref.id)
          : ref.kind === 'logged-model' ? await resolver.experimentOfLoggedModel(ref.id)
          : await resolver.experimentOfTrace(ref.id);
        const what = `${ref.kind === 'logged-model' ? 'logged model' : ref.kind} ${ref.id}`;
        // A create's own id (StartTraceV3, OTLP spans) that names nothing yet: nothing to check.
        if (experimentId === undefined && check.ifExists) return { decision: NEW_ID, label: what, logName: `${ref.kind}:${ref.id}` };
        const info = experimentId === undefined ? missingExperiment(resolver.workspace) : await resolveExperiment(experimentId);
        const decision = levelByIdOf(subject, info);
        // Below READ the message names what the request named, so it reads the same whether the
        // thing exists or not (and does not tell which experiment holds it).
        const label = experimentId !== undefined && atLeast(decision.level, 'READ') ? `experiment ${experimentId}` : what;
        return { decision, label, logName: experimentId !== undefined ? `experiment:${experimentId}` : `${ref.kind}:${ref.id}` };
      }
      case 'location': {
        // Readable only as part of the run's (or logged model's) artifacts: inside them, on their experiment.
        const owner = ref.runId !== undefined ? { kind: 'run', id: ref.runId } as const : ref.loggedModelId !== undefined ? { kind: 'logged-model', id: ref.loggedModelId } as const : undefined;
        const root = owner === undefined ? undefined
          : owner.kind === 'run' ? await resolver.artifactUriOfRun(owner.id) : await resolver.artifactLocationOfLoggedModel(owner.id);
        const label = `source ${JSON.stringify(ref.uri.slice(0, 200))}`;
        if (owner === undefined || root === undefined || !isInside(ref.uri, root)) {
          const where = owner === undefined ? 'no run_id or model_id is given' : `it is not inside the artifacts of the ${owner.kind === 'run' ? 'run' : 'logged model'} ${owner.id}`;
          const decision: LevelDecision = { level: 'NO_PERMISSIONS', reason: `only runs:/, models:/ and mlflow-artifacts:/ sources, or a location inside the artifacts of the run_id or model_id given, can be checked; ${where}` };
          return { decision, label: `${label} (${decision.reason})`, logName: 'location' };
        }
        const experimentId = owner.kind === 'run' ? await resolver.experimentOfRun(owner.id) : await resolver.experimentOfLoggedModel(owner.id);
        const info = experimentId === undefined ? missingExperiment(resolver.workspace) : await resolveExperiment(experimentId);
        return { decision: levelByIdOf(subject, info), label, logName: experimentId !== undefined ? `experiment:${experimentId}` : 'location' };
      }
      case 'dataset': {
        const ids = await resolver.experimentsOfDataset(ref.id);
        const infos = ids && ids.length ? await Promise.all(ids.map(resolveExperiment)) : [missingExperiment(resolver.workspace)];
        // A dataset linked to several experiments: what the user may do on every one of them.
        let decision: LevelDecision | undefined;
        for (const info of infos) {
          const one = levelByIdOf(subject, info);
          if (!decision || levelRank(one.level) < levelRank(decision.level)) decision = one;
        }
        const label = ids && ids.length && atLeast(decision!.level, 'READ') ? `experiment ${ids.join(', ')} (dataset ${ref.id})` : `dataset ${ref.id}`;
        return { decision: decision!, label, logName: ids && ids.length ? ids.map((id) => `experiment:${id}`).join(',') : `dataset:${ref.id}` };
      }
    }
  }

  /** Tag keys a route writes that need more than the route's level, or that no one but admins may write. */
  function reservedTagProblem(rule: RouteRule, extracted: ExtractedResources, admin: boolean): { refuse?: string; manage?: string } {
    if (!rule.writesTags || extracted.tagKeys.length === 0 || admin) return {};
    const { on, adminOnly } = rule.writesTags;
    if (on === 'run' || on === 'trace') {
      // runs/create is rewritten instead (stampsUser).
      if (adminOnly && !rule.stampsUser && extracted.tagKeys.includes(adminOnly.key)) {
        return { refuse: `only admins may set or delete the ${adminOnly.key} tag: ${adminOnly.why}` };
      }
      return {};
    }
    const reserved = extracted.tagKeys.find(isReservedTag);
    if (reserved === undefined) return {};
    if (rule.creates) return { refuse: `tags starting with "mlgate." are reserved: mlgate adds the owner tag itself, and grants are made by MANAGE holders (mlgate grant, /-/permissions); remove ${JSON.stringify(reserved)} from the request` };
    return { manage: reserved };
  }

  /** The body to forward for creates (owner tag) and new runs (the authenticated user), or undefined to keep it. */
  function rebuiltBody(rule: RouteRule, body: JsonObject | undefined, principal: Principal, admin: boolean): Buffer | undefined {
    if (!body) return undefined;
    if (rule.creates) {
      const tags = Array.isArray(body.tags) ? body.tags : [];
      if (admin && tags.some((tag) => jsonObject(tag)?.key === OWNER_TAG)) return undefined; // an admin creating on someone's behalf
      return Buffer.from(JSON.stringify({ ...body, tags: [...tags, { key: OWNER_TAG, value: principal.user }] }));
    }
    if (rule.stampsUser) {
      const tags = (Array.isArray(body.tags) ? body.tags : []).filter((tag) => jsonObject(tag)?.key !== RUN_USER_TAG);
      const stamped: JsonObject = { ...body, user_id: principal.user, tags: [...tags, { key: RUN_USER_TAG, value: principal.user }] };
      delete stamped.userId; // protobuf's JSON name for user_id: MLflow would read it too
      return Buffer.from(JSON.stringify(stamped));
    }
    return undefined;
  }

  /** Writes that change what the cached experiments and models say: dropped now and once the write is done. */
  function invalidation(rule: RouteRule, extracted: ExtractedResources, resolver: Resolver): (() => void) | undefined {
    const changes = (kind: 'experiment' | 'registered-model') => rule.creates === kind || rule.renames?.on === kind || rule.writesTags?.on === kind || rule.invalidates?.includes(kind) === true;
    const experimentWrite = changes('experiment');
    const modelWrite = changes('registered-model');
    const datasetWrite = rule.invalidates?.includes('dataset') === true;
    if (!experimentWrite && !modelWrite && !datasetWrite) return undefined;
    return () => {
      if (experimentWrite) {
        const ids = extracted.checks.flatMap((check) => (check.ref.kind === 'experiment' ? [check.ref.id] : []));
        if (ids.length === 0) resolver.invalidateExperiment();
        for (const id of ids) resolver.invalidateExperiment(id);
      }
      if (modelWrite) {
        for (const check of extracted.checks) if (check.ref.kind === 'registered-model') resolver.invalidateRegisteredModel(check.ref.name);
        if (extracted.newName !== undefined) resolver.invalidateRegisteredModel(extracted.newName);
      }
      if (datasetWrite) for (const check of extracted.checks) if (check.ref.kind === 'dataset') resolver.invalidateDataset(check.ref.id);
    };
  }

  /**
   * The request body, read whole to check it (up to authz.maxCheckedBody: 413 beyond; 503 while
   * limits.checkedBodyBudget is spent), or what to do instead.
   */
  async function readCheckedBody(req: IncomingMessage, ctx: RequestContext, rule: RouteRule): Promise<{ bytes: Buffer } | AccessDecision> {
    const read = await readRequestBody(req, ctx, options.maxCheckedBody, options.bodyBudget);
    if (read.ok) return { bytes: read.body };
    if (!read.tooLarge) return read.busy ? { ok: false, error: BUSY } : { ok: false, clientLeft: true };
    return {
      ok: false,
      error: {
        status: 413, code: 'RESOURCE_EXHAUSTED', headers: { connection: 'close' },
        message: `request body larger than ${options.maxCheckedBody} bytes, the most mlgate reads to check ${rule.name} (authz.maxCheckedBody)`,
      },
    };
  }

  /**
   * An OTLP export (POST /v1/traces) as MLflow reads it: the body (authz.maxCheckedBody), decompressed
   * as MLflow decompresses it (authz.maxDecompressedBody, 413 beyond; for admins too), and for
   * non-admins the trace id of every span. `raw`: the bytes read, to forward as they came.
   */
  async function otlpTraces(req: IncomingMessage, ctx: RequestContext, rule: RouteRule, admin: boolean): Promise<{ traceIds: string[]; raw: Buffer } | AccessDecision> {
    const read = await readCheckedBody(req, ctx, rule);
    if (!('bytes' in read)) return read;
    const encoding = req.headers['content-encoding'];
    const decoded = await decodeBody(read.bytes, encoding, options.maxDecompressedBody ?? 64 * 1024 * 1024);
    if (!decoded.ok) {
      return decoded.status === 413
        ? { ok: false, error: { status: 413, code: 'RESOURCE_EXHAUSTED', message: decoded.message } }
        : badRequest(decoded.message);
    }
    if (admin) return { traceIds: [], raw: read.bytes };
    // MLflow 3.11 takes exactly this type and refuses others; a later one might read another
    // encoding of the spans (OTLP/JSON) that the gateway does not check.
    if (req.headers['content-type'] !== 'application/x-protobuf') {
      return badRequest(`mlgate takes OTLP spans only as Content-Type application/x-protobuf (as MLflow does), not ${JSON.stringify(String(req.headers['content-type'] ?? '').slice(0, 100))}`);
    }
    const found = otlpTraceIds(decoded.body);
    if (!found.ok) return badRequest(`Invalid OpenTelemetry protobuf format: ${found.reason}`);
    if (found.traceIds.length > MAX_IDS_PER_REQUEST) return badRequest(`the spans name ${found.traceIds.length} traces; at most ${MAX_IDS_PER_REQUEST} are checked per request`);
    return { traceIds: found.traceIds, raw: read.bytes };
  }

  async function decideRule(req: IncomingMessage, ctx: RequestContext, target: CanonicalTarget, rule: RouteRule, params: Readonly<Record<string, string>>, subject: Subject, workspace: string): Promise<AccessDecision> {
    const { principal, admin } = subject;
    const query = new URLSearchParams(target.query);
    let raw: Buffer | undefined;
    let body: JsonObject | undefined;
    if (needsRequestBody(rule, hasQueryParams(query))) {
      const read = await readCheckedBody(req, ctx, rule);
      if (!('bytes' in read)) return read;
      raw = read.bytes;
      const parsed = parseRequestJson(raw);
      if (!parsed.ok) return { ok: false, error: { status: parsed.status, code: parsed.code, message: parsed.message } };
      body = parsed.value;
    }
    // MLflow would act on a half-read message if protobuf's parser rejected a value (request-message.ts).
    const message = requestMessageOf(req.method ?? 'GET', target.path);
    if (message !== undefined && (body !== undefined || hasQueryParams(query))) {
      const problem = messageProblem(message, body !== undefined ? { body } : { query });
      if (problem) return badRequest(`MLflow's parser would not read this request whole, so mlgate refuses it: ${problem}`);
    }
    const extracted = extractResources(rule, { query, body, pathParams: params, headers: req.headers, workspace });
    if (!extracted.ok) return { ok: false, error: { status: extracted.status, code: extracted.code, message: extracted.message } };
    if (rule.namesTraces) {
      // Trace ids a create body or an OTLP payload names beyond the table's fields (routes-traces.ts).
      const named = rule.namesTraces === 'otlp' ? await otlpTraces(req, ctx, rule, admin) : { traceIds: assessmentTraceIds(body), raw: undefined };
      if ('ok' in named) return named;
      if (named.raw) raw = named.raw;
      const seen = new Set(extracted.checks.map((check) => (check.ref.kind === 'trace' ? check.ref.id : '')));
      for (const id of named.traceIds) {
        if (seen.has(id)) continue;
        seen.add(id);
        extracted.checks.push({ ref: { kind: 'trace', id }, level: 'EDIT', source: rule.namesTraces === 'otlp' ? 'body span trace_id' : 'body assessment trace_id', ifExists: true });
      }
    }

    const tags = reservedTagProblem(rule, extracted, admin);
    if (tags.refuse) return denied(tags.refuse);
    if (!admin) {
      for (const { field, why } of rule.adminOnlyFields ?? []) {
        // protobuf's JSON parser takes the camelCase spelling too.
        const camel = field.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
        const value = body?.[field] ?? body?.[camel] ?? query.get(field) ?? query.get(camel);
        if (value !== undefined && value !== null && value !== '') return denied(`only admins may set ${field} on ${rule.name}: ${why}; leave it out to use the server's default`);
      }
    }

    if (!admin && extracted.checks.length > 0) {
      // A few at a time, in order; the first denial stops the rest, and the request starts at most
      // authz.maxLookupsPerRequest look-ups (LookupBoundError: a 400, see authorize).
      const budget = new LookupBudget(options.maxLookupsPerRequest ?? 100);
      ctx.lookups = budget;
      const lookups = resolver.forRequest(budget, workspace);
      // An OTLP export may name hundreds of traces: asked about together, not one by one.
      if (rule.namesTraces === 'otlp') await lookups.primeTraces(extracted.checks.flatMap((check) => (check.ref.kind === 'trace' ? [check.ref.id] : [])));
      const logNames: string[] = [];
      for (let start = 0; start < extracted.checks.length; start += CHECKS_AT_ONCE) {
        const chunk = extracted.checks.slice(start, start + CHECKS_AT_ONCE);
        const outcomes = await Promise.all(chunk.map((check) => outcomeOf(subject, check, lookups)));
        for (const [i, check] of chunk.entries()) {
          const outcome = outcomes[i]!;
          logNames.push(outcome.logName);
          let needed: PermissionLevel = check.level;
          let why = rule.name;
          if (tags.manage !== undefined && check.ref.kind === (rule.writesTags!.on === 'experiment' ? 'experiment' : 'registered-model')) {
            needed = 'MANAGE';
            why = `${rule.name} of the reserved tag ${JSON.stringify(tags.manage)}`;
          }
          if (!atLeast(outcome.decision.level, needed)) {
            ctx.resource = resourceField(logNames);
            // Below READ the same words whether the resource exists or not (see levelByIdOf).
            const unseen = atLeast(outcome.decision.level, 'READ') ? '' : ' (or it does not exist)';
            return denied(`user ${principal.user} has ${outcome.decision.level} on ${outcome.label}${unseen}; ${why} needs ${needed}`);
          }
        }
      }
      ctx.resource = resourceField(logNames);
    } else if (extracted.checks.length > 0) {
      ctx.resource = resourceField(extracted.checks.map((check) => plainLogName(check)));
    }

    const forward = rebuiltBody(rule, body, principal, admin) ?? raw;
    const inWorkspace = resolver.inWorkspace(workspace);
    const invalidate = invalidation(rule, extracted, inWorkspace);
    if (invalidate) {
      invalidate();
      ctx.atEnd.push(invalidate);
    }
    // A create's own id (ifExists) looked up a moment ago may be remembered as missing (resolver.ts):
    // MLflow makes it now, so forget that now and once MLflow has answered.
    const created = extracted.checks.flatMap((check) => (check.ifExists && 'id' in check.ref ? [`${check.ref.kind}:${check.ref.id}`] : []));
    if (created.length > 0) {
      const forget = () => inWorkspace.forgetMissing(created);
      forget();
      ctx.atEnd.push(forget);
    }
    const filter = rule.filter;
    let filterResponse: ((answer: Buffer) => Promise<Buffer>) | undefined;
    if (filter && !admin) {
      // The caller's own search parameters, to page on with when hidden entries leave a page short.
      const message: JsonObject = body ?? Object.fromEntries([...new Set(query.keys())].map((key) => {
        const values = query.getAll(key);
        return [key, values.length === 1 ? values[0] : values];
      }));
      const method = rule.method === 'POST' ? 'POST' : 'GET';
      const nextPage = (pageToken: string, maxResults: number) => inWorkspace.searchPage(method, target.path, { ...message, page_token: pageToken, max_results: maxResults });
      const access = searchAccess(subject, inWorkspace);
      filterResponse = (answer: Buffer) => filterSearchResponseBytes(filter, answer, access, maxResultsOf(message.max_results), nextPage);
    }
    // A reserved tag (a grant, the owner) set or deleted through MLflow's own API changes permissions as
    // /-/api/permissions does: once MLflow has taken it, and before the client hears so, every gateway
    // is told (the answer waits for the announcement, as the permissions API's does).
    const grantsChanged = options.grantsChanged;
    const changed = grantsChanged && rule.writesTags && extracted.tagKeys.some(isReservedTag) ? grantChangesOf(extracted, workspace) : [];
    if (grantsChanged && changed.length > 0 && !filterResponse) {
      filterResponse = async (answer: Buffer) => {
        await Promise.all(changed.map((change) => grantsChanged(change)));
        return answer;
      };
    }
    return { ok: true, ...(forward ? { body: forward } : {}), ...(filterResponse ? { filterResponse } : {}) };
  }

  function grantChangesOf(extracted: ExtractedResources, workspace: string): GrantChange[] {
    return extracted.checks.flatMap((check): GrantChange[] => {
      if (check.ref.kind === 'experiment') return [{ workspace, kind: 'experiment', id: check.ref.id, name: check.ref.id }];
      if (check.ref.kind === 'registered-model') return [{ workspace, kind: 'registered-model', name: check.ref.name }];
      return [];
    });
  }

  /** What the search filter (search-filter.ts) asks about the user, answered like every other check. */
  function searchAccess(subject: Subject, resolver: Resolver): SearchAccess {
    return {
      levelOf: (kind, info) => levelOf(subject, resourceInfoFromTags(kind, resolver.workspace, info)).level,
      levelOfModel: async (name) => levelOf(subject, await resolver.registeredModel(name)).level,
      levelOfExperiment: async (id) => levelByIdOf(subject, await resolver.experiment(id)).level,
      levelOfWorkspace: async (name) => (await mayUse(subject, name) ? 'READ' : 'NO_PERMISSIONS'),
    };
  }

  /**
   * Why a request naming a workspace other than the default is refused, if it is: the upstream
   * has no workspaces (MLflow 2.x would act in its only one, whatever the policy said about the
   * named one), or the user may not use it (the same words whether it exists or not).
   */
  async function workspaceRefusal(ctx: RequestContext, subject: Subject, workspace: string): Promise<AccessDecision | undefined> {
    const enabled = await options.workspacesEnabled();
    if (enabled === undefined) {
      return { ok: false, error: { status: 503, code: 'TEMPORARILY_UNAVAILABLE', message: 'mlgate cannot tell whether the MLflow tracking server has workspaces on (it does not answer); retry shortly', headers: { 'retry-after': '2' } } };
    }
    if (!enabled) {
      return { ok: false, error: { status: 400, code: 'FEATURE_DISABLED', message: 'the MLflow tracking server has no workspaces (start it with mlflow server --enable-workspaces); leave out the X-MLFLOW-WORKSPACE header' } };
    }
    try {
      if (!await mayUse(subject, workspace)) return denied(`user ${subject.principal.user} may not use workspace ${workspace} (or it does not exist)`);
    } catch (err) {
      if (!(err instanceof MlflowError)) throw err;
      logger.warn({ reqId: ctx.id, err: err.message }, 'authorization look-up failed');
      return { ok: false, error: { status: 502, code: 'TEMPORARILY_UNAVAILABLE', message: err.message } };
    }
    return undefined;
  }

  async function authorize(req: IncomingMessage, ctx: RequestContext): Promise<AccessDecision> {
    const subject = ctx.subject!;
    const target = canonicalizeTarget(ctx.upstreamTarget);
    if (!target.ok) return badRequest(`mlgate refuses this request target: ${target.reason}`);
    const { admin } = subject;
    const named = requestWorkspace(req.headers);
    if (!named.ok) return badRequest(named.reason);
    const { workspace } = named;
    ctx.workspace = workspace;
    if (workspace !== DEFAULT_WORKSPACE) {
      const refusal = await workspaceRefusal(ctx, subject, workspace);
      if (refusal) return refusal;
    }
    const method = req.method ?? 'GET';
    const match = matchRule(method, target.path);
    if (!match) {
      if (target.prefix === undefined && !PREFIXED_API.test(target.path)) return ALLOWED; // UI pages and other non-API paths
      if (admin || options.allowUnknownRoutes) return ALLOWED;
      return denied(`mlgate does not know the route ${method} ${target.path}; only admins may call routes it does not know`);
    }
    const { rule } = match;
    ctx.family = rule.family;
    switch (rule.resource) {
      case 'public':
        return ALLOWED;
      case 'blocked':
        return denied(`${rule.name} is blocked for everyone: MLflow trusts its callers there as local, and behind mlgate every caller looks local`);
      case 'admin-only':
        return admin ? ALLOWED : denied(`only admins may call ${rule.name}: mlgate cannot tell whose resources it touches`);
      default:
        try {
          return await decideRule(req, ctx, target, rule, match.params, subject, workspace);
        } catch (err) {
          if (err instanceof LookupBoundError) {
            logger.warn({ reqId: ctx.id, user: subject.principal.user, bound: err.bound }, 'request refused: too many look-ups');
            return badRequest(`mlgate refuses this request: ${err.message}`);
          }
          if (!(err instanceof MlflowError)) throw err;
          logger.warn({ reqId: ctx.id, err: err.message }, 'authorization look-up failed');
          return { ok: false, error: { status: 502, code: 'TEMPORARILY_UNAVAILABLE', message: err.message } };
        }
    }
  }

  function authorizeUpgrade(ctx: RequestContext): GatewayError | undefined {
    const target = canonicalizeTarget(ctx.upstreamTarget);
    if (!target.ok) return { status: 400, code: 'INVALID_PARAMETER_VALUE', message: `mlgate refuses this request target: ${target.reason}` };
    if (ctx.subject!.admin) return undefined;
    const match = matchRule('GET', target.path);
    const mlflowRoute = target.prefix !== undefined || PREFIXED_API.test(target.path) || (match !== undefined && match.rule.resource !== 'none' && match.rule.resource !== 'public');
    return mlflowRoute ? { status: 403, code: 'PERMISSION_DENIED', message: `MLflow takes no WebSocket upgrades on ${target.path}; only admins may send them` } : undefined;
  }

  return { authorize, authorizeUpgrade, mayUseWorkspace: mayUse };
}

function plainLogName(check: ResourceCheck): string {
  const { ref } = check;
  switch (ref.kind) {
    case 'artifact-path':
      return `experiment:${ref.experimentId}`;
    case 'registered-model':
      return `model:${ref.name}`;
    case 'workspace':
      return `workspace:${ref.name}`;
    case 'experiment-name':
      return `experiment-name:${ref.name}`;
    case 'location':
      return 'location';
    default:
      return `${ref.kind}:${ref.id}`;
  }
}

/** At most a few names in a log line: a runs/search over 500 experiments says how many more. */
function resourceField(names: string[]): string {
  const unique = [...new Set(names)];
  return unique.length <= 5 ? unique.join(',') : `${unique.slice(0, 5).join(',')},+${unique.length - 5} more`;
}
