// What start-up can tell about a set-up that runs but will surprise someone later: nobody able to
// manage, MLflow not running yet, an MLflow newer than the routes mlgate knows, the port taken.
// Each says the command or setting that fixes it.
import cluster from 'node:cluster';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { BOOTSTRAP_USER, mlgateCommand, shellWord } from '../auth/bootstrap-admin.ts';
import { readHtpasswdUsers } from '../auth/htpasswd-file.ts';
import { MlflowServerInfo, NEWEST_KNOWN_MLFLOW, newerThanKnown, type MlflowServerFacts } from '../authz/mlflow-server-info.ts';
import { loadPolicy } from '../authz/policy.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';

const PROBE_TIMEOUT_MS = 2000;

/**
 * Logs a warning for each: no admin at all (an htpasswd file brought from elsewhere, without the
 * "admin" the built-in policy trusts, and no policy file), an upstream that does not answer, and an
 * MLflow newer than the route lists; and, when MLflow answers, which version it is (info). None
 * stops the gateway. Call it once listening; it never throws. With `workers: N` only the first
 * worker logs these, so the lines are not repeated N times (nor at each restart).
 */
export async function warnAtStartup(config: Config, logger: Logger): Promise<void> {
  if (cluster.isWorker && cluster.worker?.id !== 1) return;
  try {
    const noAdmin = await noAdminWarning(config);
    if (noAdmin) logger.warn({ file: config.auth.htpasswd, policyFile: config.authz.policyFile }, noAdmin);
    // Each of MLflow's servers; its version once one answers.
    let answering = 0;
    for (const server of config.upstream) {
      const upstreamDown = await upstreamWarning(new URL(server));
      if (upstreamDown) logger.warn({ upstream: new URL(server).origin }, upstreamDown);
      else answering++;
    }
    if (answering > 0) await logMlflowVersion(config, logger);
  } catch (err) {
    logger.debug({ err }, 'start-up checks failed');
  }
  logger.flush();
}

async function noAdminWarning(config: Config): Promise<string | undefined> {
  const policy = loadPolicy(config.authz.policyFile);
  if (!config.auth.passwordSignIn && config.oidc.providers.length > 0) {
    // The built-in policy's admin is the htpasswd user, and there is no password file.
    if (policy.source !== undefined && (policy.admins.users.size > 0 || policy.admins.groups.size > 0)) return undefined;
    return `nobody can manage permissions: people sign in only through identity providers, and the policy file (${config.authz.policyFile}) names no admins. `
      + `Name a provider group (or user) as admins, e.g.: printf 'admins: ["@mlflow-admins"]\\ndefault: READ\\n' > ${shellWord(config.authz.policyFile)}`;
  }
  if (policy.source !== undefined) return undefined;
  const users = await readHtpasswdUsers(config.auth.htpasswd);
  if (users.includes(BOOTSTRAP_USER)) return undefined;
  const policyFile = shellWord(config.authz.policyFile);
  if (users.length === 0) {
    return `${config.auth.htpasswd} has no users, so nobody can sign in; add the admin with: ${mlgateCommand(`user add ${BOOTSTRAP_USER}`)}`;
  }
  // The built-in policy's default (READ for everyone) made explicit, so the file changes only who is admin.
  return `nobody can manage permissions: there is no policy file (${config.authz.policyFile}) and no user "${BOOTSTRAP_USER}" in ${config.auth.htpasswd}, `
    + `the admin the built-in policy trusts. Make ${users[0]} an admin with: printf 'admins: [${users[0]}]\\ndefault: READ\\n' > ${policyFile}`;
}

/** Ready means the upstream answers HTTP at all (any status); MLflow serves /health. `problem`: why not. */
export function probeUpstream(upstream: URL): Promise<{ ready: boolean; detail: string; problem?: string }> {
  return new Promise((resolve) => {
    const request = (upstream.protocol === 'https:' ? https : http).get(new URL('/health', upstream), { timeout: PROBE_TIMEOUT_MS, agent: false }, (response) => {
      response.resume();
      resolve({ ready: true, detail: `${upstream.origin} answered ${response.statusCode}` });
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`)));
    request.on('error', (err: NodeJS.ErrnoException) => {
      const problem = err.code ?? err.message;
      resolve({ ready: false, detail: `${upstream.origin}: ${problem}`, problem });
    });
  });
}

async function upstreamWarning(upstream: URL): Promise<string | undefined> {
  const probe = await probeUpstream(upstream);
  if (probe.ready) return undefined;
  return `the MLflow tracking server at ${upstream.origin} does not answer (${probe.problem}); requests get 502 until it does. `
    + `Start it with: mlflow server --host ${upstream.hostname} --port ${upstream.port || (upstream.protocol === 'https:' ? 443 : 80)}`;
}

/** "MLflow 3.11.1 at http://127.0.0.1:5000 (workspaces off)", and the warning when it is newer than the route lists. */
async function logMlflowVersion(config: Config, logger: Logger): Promise<void> {
  const upstream = { origin: config.upstream.map((server) => new URL(server).origin).join(', ') };
  const info = new MlflowServerInfo({ upstream: config.upstream, timeoutMs: PROBE_TIMEOUT_MS, userHeader: config.proxy.userHeader });
  const facts = await info.facts().finally(() => info.close());
  const fields = { upstream: upstream.origin, mlflowVersion: facts.version, workspaces: facts.workspacesEnabled };
  if (facts.version === undefined) return void logger.info({ ...fields, problem: facts.problem }, `the MLflow version at ${upstream.origin} is unknown: ${facts.problem}`);
  const workspaces = facts.workspacesEnabled === undefined ? 'unknown' : facts.workspacesEnabled ? 'on' : 'off';
  logger.info(fields, `MLflow ${facts.version} at ${upstream.origin} (workspaces ${workspaces})`);
  const warning = versionWarning(facts.version, config.authz.allowUnknownRoutes);
  if (warning) logger.warn({ upstream: upstream.origin, mlflowVersion: facts.version, newestKnown: NEWEST_KNOWN_MLFLOW }, warning);
}

/** The consequence of an MLflow newer than the route lists, and what relaxes it; undefined when it is not newer. */
function versionWarning(version: string, allowUnknownRoutes: boolean): string | undefined {
  if (!newerThanKnown(version)) return undefined;
  const consequence = allowUnknownRoutes
    ? 'routes mlgate does not know are forwarded unchecked for everyone (authz.allowUnknownRoutes: true). Update mlgate to have them checked'
    : 'routes mlgate does not know are refused (403) for everyone but admins. If non-admins need them, update mlgate, '
      + 'or set authz.allowUnknownRoutes: true to forward them unchecked for everyone';
  return `MLflow ${version} is newer than the newest MLflow whose routes mlgate knows (${NEWEST_KNOWN_MLFLOW}): ${consequence}`;
}

/** What admins' /-/readyz says about the MLflow behind the gateway (`null`: not known, `problem` says why). */
export function mlflowReadiness(facts: MlflowServerFacts, allowUnknownRoutes: boolean) {
  const warning = facts.version === undefined ? undefined : versionWarning(facts.version, allowUnknownRoutes);
  return {
    version: facts.version ?? null, workspaces: facts.workspacesEnabled ?? null, newestKnown: NEWEST_KNOWN_MLFLOW,
    ...(warning && { warning }), ...(facts.problem && { problem: facts.problem }),
  };
}

/**
 * listen()'s EADDRINUSE as a sentence that says what to do; any other error as it was. The port is
 * the gateway's (--port) or, with TLS, the one that redirects HTTP (tls.redirectHttpPort).
 */
/**
 * Before `workers` above 1 are forked: each worker would report a port in use itself, and the
 * message would come once per worker that got to it. Listening for a moment here finds it first,
 * and start-up stops with the one message a single process gives (listenError).
 */
export async function probePorts(config: Config): Promise<void> {
  const ports = [config.port, ...(config.tls.enabled && config.tls.redirectHttpPort !== undefined ? [config.tls.redirectHttpPort] : [])];
  for (const port of ports) {
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ port, host: config.host, exclusive: true }, resolve);
    });
    await new Promise((resolve) => probe.close(resolve));
  }
}

export function listenError(err: unknown, config: Config): unknown {
  const { code, port } = (err ?? {}) as NodeJS.ErrnoException & { port?: number };
  if (code !== 'EADDRINUSE') return err;
  const redirect = port !== undefined && port === config.tls.redirectHttpPort && port !== config.port;
  const taken = port ?? config.port;
  const fix = redirect ? 'change tls.redirectHttpPort in the configuration' : `choose another port with: ${mlgateCommand(`serve --port ${taken + 1}`)}`;
  return new Error(`port ${taken} on ${config.host} is already in use (another mlgate, or another program); stop that, or ${fix}`);
}
