import cluster from 'node:cluster';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { ApiTokenStore } from '../auth/api-tokens.ts';
import { createAuthenticator, type Authenticator } from '../auth/authenticate.ts';
import { createClientCertificateStep } from '../auth/client-certificate.ts';
import { bootstrapAdminIfMissing, BOOTSTRAP_USER, changePasswordCommand } from '../auth/bootstrap-admin.ts';
import { HashWorkerPool } from '../auth/hash-worker-pool.ts';
import { unmatchableBcryptHash } from '../auth/htpasswd-formats.ts';
import { HtpasswdStore } from '../auth/htpasswd-store.ts';
import { createJwtVerifier } from '../auth/jwt.ts';
import { createOidcProviders, providerBearerTokens } from '../auth/oidc.ts';
import { ProviderRefresh } from '../auth/oidc-refresh.ts';
import { Lockout } from '../auth/lockout.ts';
import { SharedState } from '../state/redis-state.ts';
import { RedisTokenStore } from '../state/redis-tokens.ts';
import { GrantInvalidation, type GrantChange } from '../state/grant-invalidation.ts';
import { primaryChannel } from '../state/worker-state.ts';
import { PasswordChecker } from '../auth/password-checker.ts';
import { SessionManager } from '../auth/session.ts';
import { createSessionStep } from '../auth/session-step.ts';
import { createAuthorizer, type Authorizer } from '../authz/authorize-request.ts';
import { effectiveLevel, isAdmin, resourceInfoFromTags } from '../authz/decide.ts';
import { MlflowServerInfo } from '../authz/mlflow-server-info.ts';
import { describePolicy, PolicyStore } from '../authz/policy.ts';
import { Resolver } from '../authz/resolver.ts';
import type { Config } from '../config/schema.ts';
import { IDENTITY_HEADERS } from '../config/schema.ts';
import { compileAllowCidrs } from '../context/allow-cidrs.ts';
import { trustedProxies } from '../context/client-ip.ts';
import { contextOf } from '../context/request-context.ts';
import { createControlApp } from '../control/app.ts';
import { createPermissionsDependencies, type PrincipalLevelOf } from '../control/permissions.ts';
import { createAuditLog } from '../log/audit-log.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { createForwarder } from '../proxy/forwarder.ts';
import { createUndiciForwarder } from '../proxy/undici-forwarder.ts';
import { UpstreamServers, type UpstreamPool } from '../proxy/upstream-pool.ts';
import { GOING_AWAY, WebSocketTunnels } from '../proxy/websocket-tunnels.ts';
import { compileRoutes, locationUnderPrefix, type UpstreamRoute } from '../context/upstream-routes.ts';
import { BodyBudget } from '../authz/read-body.ts';
import { prepareAcme } from './acme.ts';
import { ensureCertificate, REMAKE_COMMAND } from './certificate.ts';
import { createConnectionGuard } from './connection-guard.ts';
import { createMetrics, type MetricsCaller } from './metrics.ts';
import { mlflowReadiness, probeUpstream } from './startup-checks.ts';
import { createSlowRequestWatch } from './slow-requests.ts';
import { createRequestPipeline } from './request-pipeline.ts';
import { createHttpsRedirectServer, createListener } from './tls-server.ts';
import { VERSION } from '../version.ts';

export interface Gateway {
  /** e.g. https://127.0.0.1:8888 */
  url: string;
  port: number;
  logger: Logger;
  passwordChecker: PasswordChecker;
  /** Checks credentials; its verifyPassword is what a sign-in form calls (lockout included). */
  authenticator: Authenticator;
  /** Per-user authorization: the policy in force, the upstream look-ups and their caches, the decision step. */
  authz: { policy: PolicyStore; resolver: Resolver; authorizer: Authorizer };
  /**
   * Re-reads the files it watches (users, tokens, policy, certificate) now: SIGHUP, as a service
   * manager's reload sends it, instead of at the next change the watch sees. A file with problems
   * keeps what is in force, as on any reload.
   */
  reload(): void;
  /** Stops accepting, lets in-flight requests finish within the grace period, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Called with the generated admin password on first start; defaults to printing it to stderr. */
  announceAdminPassword?: (user: string, password: string, htpasswdPath: string) => void;
  /**
   * The caller's level on an experiment or registered model, for grant management (/-/api/permissions,
   * /-/permissions). Defaults to the gateway's decision engine (src/authz/decide.ts); tests may set their own.
   */
  permissionLevel?: PrincipalLevelOf;
}

export async function startGateway(config: Config, options: StartOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.log);
  // Every upstream's servers (docs/operations.md "Several MLflow servers"): MLflow's list first, so
  // its servers are checked at proxy.healthCheck.path whatever route lists them too.
  const { healthCheck } = config.proxy;
  const upstreamServers = new UpstreamServers({ path: healthCheck.path, intervalMs: healthCheck.interval, timeoutMs: healthCheck.timeout, fails: healthCheck.fails, passes: healthCheck.passes }, logger);
  const upstream = upstreamServers.pool(config.upstream);
  const jwt = await createJwtVerifier(config.jwt, logger); // first: a bad key stops start-up before anything is made
  // So do an unreadable provider CA and a client secret missing from the environment.
  const oidcProviders = createOidcProviders(config.oidc, { htpasswdHas: (user) => store.hashOf(user) !== undefined, logger, env: process.env });
  // Before anything is made: a policy file with problems stops start-up with all of them.
  const policy = new PolicyStore({ path: config.authz.policyFile, watchIntervalMs: config.watchInterval }, logger);
  const pool = new HashWorkerPool(config.auth.hashWorkers);

  // Sign-in through identity providers only: no password file is made (its admins are the policy's).
  const providersOnly = !config.auth.passwordSignIn && config.oidc.providers.length > 0;
  const adminPassword = providersOnly ? undefined : await bootstrapAdminIfMissing(config.auth.htpasswd, pool, config.auth.bcryptCost);
  if (adminPassword) (options.announceAdminPassword ?? printAdminPassword)(BOOTSTRAP_USER, adminPassword, config.auth.htpasswd);

  let checker: PasswordChecker | undefined;
  const store = new HtpasswdStore({
    path: config.auth.htpasswd,
    allowInsecureHashes: config.auth.allowInsecureHashes,
    watchIntervalMs: config.watchInterval,
    onUsersChanged: (users) => checker?.forgetUsers(users),
    optional: providersOnly,
  }, logger);
  store.start();
  const noUsersHash = unmatchableBcryptHash(config.auth.bcryptCost);
  checker = new PasswordChecker(pool, {
    cacheSize: config.auth.cacheSize,
    cacheTtlMs: config.auth.cacheTtl,
    // Unknown users cost what the file's most common entry costs (bcrypt at bcryptCost while it has none).
    dummyHash: () => store.unknownUserHash ?? noUsersHash,
  });
  // state.redis (docs/operations.md "Several gateways"): no connection at all without it.
  const shared = config.state.redis ? new SharedState(config.state.redis, logger) : undefined;
  await shared?.waitReady(Math.max(config.state.redis?.timeout ?? 0, 1000));
  // Without Redis, the other worker processes of `workers` (src/state/worker-state.ts) hear of
  // revoked tokens and changed grants through the primary before the change is answered.
  const otherWorkers = shared ? undefined : primaryChannel();
  // With Redis, issued tokens live there (src/state/redis-tokens.ts) and tokens.file is imported once.
  const apiTokens = config.tokens.enabled
    ? new ApiTokenStore({
        path: config.tokens.file, watchIntervalMs: config.watchInterval, userExists: (user) => store.hashOf(user) !== undefined,
        shared: shared && { tokens: new RedisTokenStore(shared), state: shared },
        revoked: otherWorkers && (() => otherWorkers.tokensChanged()),
      }, logger)
    : undefined;
  apiTokens?.start();
  if (apiTokens) otherWorkers?.subscribeTokens(() => apiTokens.reload(false));
  const lockout = config.lockout.enabled ? new Lockout(config.lockout, logger, shared) : undefined;
  // The audit log (docs/operations.md): lockouts as they start, policy versions as they come into force.
  const audit = createAuditLog(config.audit, logger);
  if (audit && lockout) lockout.onLock = (scope, ip, user, lockedForMs) => audit.record({ event: 'lockout', scope, lockedUser: user, lockedForMs }, { ip });
  if (audit) policy.onChange((next) => audit.record({ event: 'policy-reloaded', file: config.authz.policyFile, admins: describePolicy(next, '').admins as string[] }));
  const authenticator = createAuthenticator({
    realm: config.auth.realm,
    store,
    checker,
    clientIp: (req) => proxies.clientIp(req),
    lockout,
    apiTokens,
    jwt,
    providerTokens: providerBearerTokens(oidcProviders),
  });

  const acme = config.tls.enabled && config.acme.domains.length ? await prepareAcme(config, logger) : undefined;
  const certificate = acme ? { ...acme.paths, generated: false, selfSigned: false, missing: [] } : config.tls.enabled ? await ensureCertificate(config.tls) : undefined;
  if (certificate?.generated) logger.info({ cert: certificate.cert, reason: certificate.reason, keptKey: certificate.keptKey }, 'generated a self-signed TLS certificate; clients can trust it with MLFLOW_TRACKING_SERVER_CERT_PATH');
  // Not re-made here: every client that pinned the file would need the new one, so the user decides.
  if (certificate?.missing.length) logger.warn({ cert: certificate.cert, missing: certificate.missing, remake: REMAKE_COMMAND }, 'the self-signed TLS certificate does not cover every current name and address of this machine; re-make it (same key, so pinned clients need only the new certificate file)');
  // Mutual TLS (docs/client-certificates.md): the CAs and CRL on the listener, the user in the authentication step.
  const clientCa = config.tls.clientCertificates.ca;
  const clientCertificates = certificate && clientCa !== undefined ? createClientCertificateStep({
    config: { ...config.tls.clientCertificates, ca: clientCa }, watchIntervalMs: config.watchInterval, logger,
    proxies: trustedProxies(config.proxy.trustedProxies), trustedOrigins: new Set(config.auth.trustedOrigins),
    providerPrefixes: config.oidc.providers.map((provider) => provider.namePrefix),
  }) : undefined;
  const listener = createListener({
    certificate, minVersion: config.tls.minVersion, watchIntervalMs: config.watchInterval,
    headerTimeoutMs: config.limits.headerTimeout, keepAliveTimeoutMs: config.limits.keepAliveTimeout, acmeAlpnChallenge: acme?.alpnChallenge, clientCertificates,
  }, logger);
  const server = listener.server;

  const routes = compileRoutes(config);
  const pools = new Map(routes.map((route) => [route, upstreamServers.pool(route.upstreams, route.healthCheckPath)] as const));
  const tunnels = new WebSocketTunnels(logger);
  const makeForwarder = config.proxy.forwarder === 'undici' ? createUndiciForwarder : createForwarder;
  const forwarders = new Map(routes.map((route) => [route, makeForwarder({
    pool: pools.get(route)!,
    timeoutMs: config.proxy.timeout,
    maxBodySize: config.proxy.maxBodySize,
    keepAliveSockets: config.proxy.keepAliveSockets,
    preserveHost: !route.mlflow,
    rewriteLocation: route.stripPrefix ? (location) => locationUnderPrefix(location, route) : undefined,
    onTunnel: (client, upstreamSocket) => tunnels.connected(client, upstreamSocket),
    logger,
  })] as const));
  const proxies = trustedProxies(config.proxy.trustedProxies);
  const connections = createConnectionGuard(config.limits, proxies, logger);
  connections.attach(server);
  const slowRequests = createSlowRequestWatch(config.limits, logger);
  // Grant changes on every gateway by the next request (state.redis; docs/operations.md).
  const dropGrants = (change: GrantChange) => {
    const inWorkspace = resolver.inWorkspace(change.workspace);
    return change.kind === 'experiment' ? inWorkspace.invalidateExperiment(change.id) : inWorkspace.invalidateRegisteredModel(change.name);
  };
  const grantInvalidation = shared && new GrantInvalidation(shared, { dropResource: dropGrants, dropAll: () => resolver.invalidateAll() }, logger);
  otherWorkers?.subscribeGrants(dropGrants);
  const grantsChanged = async (change: GrantChange) => {
    dropGrants(change);
    await grantInvalidation?.announce(change);
    await otherWorkers?.grantsChanged(change);
  };
  const resolver = new Resolver({
    upstream, cacheTtlMs: config.authz.cacheTtl, timeoutMs: Math.min(config.proxy.timeout, 30_000), userHeader: config.proxy.userHeader,
    freshness: grantInvalidation && (() => grantInvalidation.check()),
  });
  const serverInfo = new MlflowServerInfo({ upstream, timeoutMs: Math.min(config.proxy.timeout, 5_000), userHeader: config.proxy.userHeader });
  const authorizer = createAuthorizer({
    policy, resolver, allowUnknownRoutes: config.authz.allowUnknownRoutes, maxCheckedBody: config.authz.maxCheckedBody, maxLookupsPerRequest: config.authz.maxLookupsPerRequest,
    maxDecompressedBody: config.authz.maxDecompressedBody, bodyBudget: new BodyBudget(config.limits.checkedBodyBudget), logger,
    workspacesEnabled: async () => (await serverInfo.facts()).workspacesEnabled,
    grantsChanged,
  });
  policy.start();
  logger.info(describePolicy(policy.current(), config.authz.policyFile), 'policy loaded');
  const sessions = config.session.enabled ? new SessionManager({ config: config.session, watchIntervalMs: config.watchInterval, shared }, store, logger) : undefined;
  if (sessions) sessions.externalCheck = (source, user) => {
    const provider = oidcProviders.get(source);
    if (!provider) return { ok: false, reason: `identity provider ${source} is no longer configured` };
    if (!provider.settings.sameUsersAsHtpasswd && store.hashOf(user) !== undefined) return { ok: false, reason: `${user} is an htpasswd user now too (docs/oidc.md)` };
    return { ok: true };
  };
  sessions?.start();
  const tls = Boolean(certificate);
  const signIn = sessions && {
    sessions, authenticator, service: config.auth.realm, tls, proxies, logger,
    providers: [...oidcProviders.values()].map((provider) => ({ name: provider.name, label: provider.label })),
    passwordSignIn: config.auth.passwordSignIn,
    endProviderSession: (name: string, signedOutPage: string) => oidcProviders.get(name)?.endSessionUrl(signedOutPage) ?? Promise.resolve(undefined),
    providerSignOutOrigin: async (name: string) => {
      const url = await oidcProviders.get(name)?.endSessionUrl('https://mlgate.invalid/');
      return url && new URL(url).origin;
    },
  };
  // Providers' refresh tokens keep their users' groups current (docs/oidc.md); one process refreshes
  // (a rotated refresh token works once), every process stores the ones its sign-ins get.
  const refresh = sessions && oidcProviders.size ? new ProviderRefresh({
    path: config.oidc.refreshTokensFile, providers: oidcProviders, key: () => sessions.derivedKey('refresh tokens'), revokeSession: (session) => sessions.revoke(session),
    tokens: apiTokens?.edits, tokensChanged: () => apiTokens?.reload(false), shared,
    absoluteTimeoutMs: config.session.absoluteTimeout, externalMaxTtlMs: config.tokens.externalMaxTtl, logger,
  }) : undefined;
  if (!cluster.isWorker || cluster.worker?.id === 1) refresh?.start();
  const oidc = sessions && oidcProviders.size ? { sessions, providers: oidcProviders, redirectUrl: config.oidc.redirectUrl, tls, proxies, logger, refresh } : undefined;
  // Grant management decides with the same engine as the request path (tests may put their own in).
  const levelOf: PrincipalLevelOf = options.permissionLevel ?? ((principal, kind, info) => effectiveLevel(principal, resourceInfoFromTags(kind, info.workspace, info), policy.current()).level);
  const permissions = createPermissionsDependencies({
    upstream, timeoutMs: config.proxy.timeout, levelOf, contextOf, tls, proxies, logger, mayUseWorkspace: authorizer.mayUseWorkspace, serverInfo,
    grantsChanged: (resource) => grantsChanged({ workspace: resource.workspace, kind: resource.kind, id: resource.id, name: resource.name }),
  });
  // /-/readyz details (upstream addresses) for admins only: their Authorization header is checked as anywhere else.
  const allowCidrs = compileAllowCidrs(config.access.allowCidrs);
  const isAdminRequest = async (req: IncomingMessage) => {
    const ctx = contextOf(req);
    // /-/readyz answers every address; one outside access.allowCidrs gets no credential checked.
    if (allowCidrs && !allowCidrs.allows(ctx?.clientIp ?? '')) return false;
    const certified = ctx && clientCertificates?.authenticate(req, ctx);
    if (certified) return certified.ok && isAdmin(certified.principal, policy.current());
    const outcome = await authenticator.authenticate(req);
    return outcome.ok && isAdmin(outcome.principal, policy.current());
  };
  // /-/metrics (metrics.token and metrics.allowCidrs are checked first): an admin's credentials, as for /-/readyz details.
  const metricsCaller = async (req: IncomingMessage): Promise<MetricsCaller> => {
    const ctx = contextOf(req);
    const outcome = (ctx && clientCertificates?.authenticate(req, ctx)) || await authenticator.authenticate(req);
    if (!outcome.ok) return 'refused';
    return isAdmin(outcome.principal, policy.current()) ? 'admin' : 'user';
  };
  const metrics = config.metrics.enabled ? createMetrics(config.metrics, {
    version: VERSION, servers: upstreamServers.all, openConnections: () => connections.open, openTunnels: () => tunnels.size,
    lockouts: lockout && (() => lockout.started), authzLookups: () => resolver.lookups, probe: probeUpstream,
    redis: shared && grantInvalidation && (() => ({ up: shared.isReachable, failures: shared.failures, grantInvalidations: grantInvalidation.drops, grantAnnounceFailures: grantInvalidation.announceFailures })),
  }) : undefined;
  const control = createControlApp({
    upstreamReady: () => probeRoutes(upstream, config.routes.length ? routes.map((route) => [route, pools.get(route)!] as const) : []),
    isAdminRequest,
    sharedState: shared && (() => ({ reachable: shared.isReachable, problem: shared.problem || undefined })),
    mlflow: async () => mlflowReadiness(await serverInfo.facts(), config.authz.allowUnknownRoutes),
    version: VERSION, logger, signIn, oidc, permissions,
    metrics: metrics && ((req) => metrics.scrape(req, metricsCaller)),
    // Users' own tokens: only where the gateway accepts tokens at all.
    tokens: apiTokens && config.tokens.selfService ? {
      contextOf, store: apiTokens.edits, maxPerUser: config.tokens.maxPerUser, externalMaxTtlMs: config.tokens.externalMaxTtl,
      tokensChanged: () => apiTokens.reload(false), lastUsedHere: () => apiTokens.lastUsedHere(), tls, proxies, logger,
    } : undefined,
  });
  const userHeader = config.proxy.userHeader.toLowerCase();
  const trustedOrigins: ReadonlySet<string> = new Set(config.auth.trustedOrigins);
  const pipeline = createRequestPipeline({
    logger,
    proxies,
    authenticator,
    routes,
    forwarders,
    policy,
    tunnels,
    control,
    identity: {
      strip: [...new Set([...IDENTITY_HEADERS, ...config.proxy.stripHeaders.map((name) => name.toLowerCase()), userHeader])],
      userHeader,
      forwardAuthorization: config.auth.forwardAuthorization,
    },
    tls: Boolean(certificate),
    hsts: certificate ? config.tls.hsts : false,
    clientCertificates,
    sessionStep: sessions && createSessionStep({ sessions, authenticator, tls, proxies, logger, trustedOrigins }),
    authorizer,
    trustedOrigins,
    slowRequests,
    connections,
    audit,
    allowCidrs,
    metrics,
  });
  server.on('request', pipeline.handleRequest);
  const upgrading = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrading.add(socket);
    socket.once('close', () => upgrading.delete(socket));
    pipeline.handleUpgrade(req, socket, head);
  });
  tunnels.start(config.watchInterval);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const [status, reason] = err.code === 'HPE_HEADER_OVERFLOW' ? ['431 Request Header Fields Too Large', 'request headers too large'] : ['400 Bad Request', 'malformed HTTP request'];
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${reason.length + 1}\r\n\r\n${reason}\n`);
  });

  await listen(server, config.port, config.host);
  // Once listening: a start-up that fails leaves no checks running.
  upstreamServers.start();
  const port = (server.address() as AddressInfo).port;
  const redirect = certificate && config.tls.redirectHttpPort !== undefined ? createHttpsRedirectServer(port, listener, acme?.challengeResponse) : undefined;
  if (redirect) await listen(redirect, config.tls.redirectHttpPort!, config.host);
  // Only now: the CA's HTTP-01 check reaches the redirect port, which must be listening.
  acme?.start(() => listener.reloadCertificate());

  const scheme = certificate ? 'https' : 'http';
  const displayHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `${scheme}://${displayHost.includes(':') ? `[${displayHost}]` : displayHost}:${port}`;
  const everywhere = config.host === '0.0.0.0' || config.host === '::';
  // What a colleague on another machine opens: this machine's name (the certificate covers it).
  const open = everywhere ? `${scheme}://${hostname()}:${port}` : url;
  logger.info({ url, open, listen: `${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`, upstream: upstream.servers.map((server) => server.origin).join(', '), users: store.userCount, tls: Boolean(certificate) }, 'mlgate listening');
  // The log stream buffers 4 KiB; without this, "listening" (and the URL) shows only once traffic fills it.
  logger.flush();

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    logger,
    passwordChecker: checker,
    authenticator,
    authz: { policy, resolver, authorizer },
    reload() {
      logger.info('re-reading the users, tokens, policy and certificate files');
      // After logrotate renamed the audit file, new lines go to a new one at its path.
      audit?.reopen();
      audit?.record({ event: 'config-reloaded', files: [config.auth.htpasswd, ...(apiTokens ? [config.tokens.file] : []), config.authz.policyFile, ...(certificate ? [certificate.cert] : [])] });
      store.reload(false);
      apiTokens?.reload(false);
      policy.reload();
      listener.reloadCertificate();
      clientCertificates?.reload();
    },
    close(graceMs = config.shutdownGrace) {
      closing ??= (async () => {
        pipeline.drain();
        acme?.stop();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        redirect?.close();
        const deadline = Date.now() + graceMs;
        while (pipeline.inFlight > 0 && Date.now() < deadline) {
          server.closeIdleConnections();
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        if (pipeline.inFlight > 0) logger.warn({ inFlight: pipeline.inFlight }, 'grace period over; closing remaining connections');
        server.closeAllConnections();
        tunnels.stop();
        tunnels.closeAll(GOING_AWAY, 'mlgate is shutting down');
        for (const socket of upgrading) if (!socket.writableEnded) socket.destroy();
        // Connections the HTTP server never saw (mid-TLS-handshake, or waiting their turn): closed
        // too, after a moment for the WebSocket close frames above to go out.
        const stragglers = setTimeout(() => connections.closeAll(), 1000);
        await closed;
        clearTimeout(stragglers);
        listener.stopWatching();
        upstreamServers.stop();
        clientCertificates?.stop();
        slowRequests.close();
        store.stop();
        await refresh?.stop();
        sessions?.stop();
        grantInvalidation?.stop();
        shared?.stop();
        await apiTokens?.stop();
        for (const forwarder of forwarders.values()) forwarder.close();
        policy.stop();
        resolver.close();
        serverInfo.close();
        await pool.close();
        await audit?.close();
        logger.info('mlgate stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Ready when MLflow and every route's upstream have a server that answers: a server the health
 * checks watch (one of a list) as they last found it, any other asked now (each distinct one once).
 * Degraded when one of a list's servers is down but each upstream still has one. `servers`, for
 * admins, only when an upstream is a list.
 */
async function probeRoutes(mlflow: UpstreamPool, routes: readonly (readonly [UpstreamRoute, UpstreamPool])[]) {
  const pools = [mlflow, ...routes.map(([, pool]) => pool)];
  const servers = [...new Set(pools.flatMap((pool) => pool.servers))];
  const states = new Map(await Promise.all(servers.map(async (server) => {
    if (server.checkPath !== undefined) {
      return [server, { ready: server.up, detail: server.up ? `${server.origin} is up` : `${server.origin}: ${server.lastError ?? 'down'}` }] as const;
    }
    return [server, await probeUpstream(server.url)] as const;
  })));
  const detailOf = (pool: UpstreamPool) => pool.servers.map((server) => states.get(server)!.detail).join('; ');
  const upstreams = { total: servers.length, answering: [...states.values()].filter((state) => state.ready).length };
  const ready = pools.every((pool) => pool.servers.some((server) => states.get(server)!.ready));
  const listed = pools.some((pool) => pool.servers.length > 1) ? {
    degraded: upstreams.answering < upstreams.total,
    servers: servers.map((server) => ({
      url: server.origin, state: (states.get(server)!.ready ? 'up' : 'down') as 'up' | 'down', checked: server.checkPath !== undefined,
      ...(server.lastError !== undefined && { lastError: server.lastError }), outstanding: server.outstanding,
    })),
  } : {};
  if (routes.length === 0) return { ready, detail: detailOf(mlflow), upstreams, ...listed };
  return { ready, upstreams, detail: detailOf(mlflow), routes: Object.fromEntries(routes.map(([route, pool]) => [route.path, detailOf(pool)])), ...listed };
}


export function printAdminPassword(user: string, password: string, htpasswdPath: string): void {
  process.stderr.write(
    `\n  mlgate created ${htpasswdPath} with one user.\n` +
    `    user:     ${user}\n    password: ${password}\n` +
    `  This is shown once. Change it with: ${changePasswordCommand(user, htpasswdPath)}\n\n`,
  );
}
