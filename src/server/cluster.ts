import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { bootstrapAdminIfMissing, BOOTSTRAP_USER } from '../auth/bootstrap-admin.ts';
import { HashWorkerPool } from '../auth/hash-worker-pool.ts';
import { Lockout } from '../auth/lockout.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { WorkerStateHub } from '../state/worker-state.ts';
import { ensureCertificate } from './certificate.ts';

/** Restarting a worker that keeps dying right away would only spin; wait this long first. */
const RESTART_DELAY_MS = 1000;

/**
 * The gateway processes `workers` asks for. `auto` is one per core, at most the CPUs a cgroup quota
 * allows (a container's --cpus, a pod's CPU limit: availableParallelism counts the machine's cores,
 * and a 512 MiB container on a 64-core host would otherwise fork 64 workers of ~80 MB), except with
 * acme.domains: each worker would order certificates on its own, and the CA's check would reach
 * whichever worker the port hands it to (the schema refuses a number above 1 with ACME).
 */
export function workerCount(config: Pick<Config, 'workers' | 'acme'>): number {
  if (config.workers !== 'auto') return config.workers;
  return config.acme.domains.length ? 1 : Math.min(availableParallelism(), cpuQuota() ?? Infinity);
}

/**
 * The CPUs this process's cgroup quota allows, rounded up (at least 1), or undefined without one:
 * cgroup v2's cpu.max ("150000 100000"; "max" for none), or v1's cpu.cfs_quota_us (-1 for none)
 * over cpu.cfs_period_us. Looked for in the process's own cgroup, then at the hierarchy's root,
 * which is where a container sees its own cgroup mounted.
 */
export function cpuQuota(root = '/sys/fs/cgroup', selfCgroup = '/proc/self/cgroup'): number | undefined {
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const cpus = (quota: number, period: number) => (quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : undefined);
  for (const line of (read(selfCgroup) ?? '').split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === '') {
      for (const dir of [join(root, path), root]) {
        const [quota, period] = (read(join(dir, 'cpu.max')) ?? '').split(' ');
        if (quota === undefined || period === undefined) continue;
        return quota === 'max' ? undefined : cpus(Number(quota), Number(period));
      }
    } else if (controllers!.split(',').includes('cpu')) {
      for (const dir of [join(root, controllers!, path), join(root, controllers!), join(root, 'cpu', path), join(root, 'cpu')]) {
        const quota = read(join(dir, 'cpu.cfs_quota_us'));
        const period = read(join(dir, 'cpu.cfs_period_us'));
        if (quota !== undefined && period !== undefined) return cpus(Number(quota), Number(period));
      }
    }
  }
  return undefined;
}

/**
 * What one of `count` workers enforces, so that the limits a user sets hold for the whole gateway
 * (docs/operations.md "Several worker processes"): connection limits and the checked-body memory are
 * divided among the workers (each enforces its share, rounded up; the primary hands connections out
 * in turn, so per-IP counts are close, not exact), `auth.hashWorkers: auto` shares the cores rather
 * than giving each worker all of them, and idle upstream connections are divided like connections.
 * Lockouts, sign-outs, grants and tokens are shared through the primary; caches stay per process.
 */
export function workerShare(config: Config, count: number): Config {
  if (count <= 1) return config;
  const share = (limit: number) => Math.ceil(limit / count);
  const { limits, auth, proxy, authz } = config;
  return {
    ...config,
    limits: {
      ...limits,
      maxConnections: share(limits.maxConnections),
      maxConnectionsPerIp: share(limits.maxConnectionsPerIp),
      // Never less than one checked body: a worker with less could never take the largest one.
      checkedBodyBudget: Math.max(share(limits.checkedBodyBudget), Math.min(limits.checkedBodyBudget, authz.maxCheckedBody)),
    },
    auth: { ...auth, hashWorkers: auth.hashWorkers === 'auto' ? Math.max(1, Math.floor(availableParallelism() / count)) : auth.hashWorkers },
    proxy: { ...proxy, keepAliveSockets: share(proxy.keepAliveSockets) },
  };
}

/**
 * The primary of `workers: N`: it does the first-start work once (admin user, self-signed
 * certificate) so workers do not race to create files, then runs N gateway processes that share
 * the port, restarts any that die, and on SIGTERM/SIGINT lets each finish its requests. Without
 * state.redis it also keeps the workers' lockout counts and sign-outs and relays grant changes and
 * token revocations (src/state/worker-state.ts), so that limits mean the same with one process or
 * several (the workers divide the rest: workerShare).
 */
export async function runPrimary(config: Config, count: number, logger: Logger): Promise<void> {
  // As startGateway does: sign-in through identity providers only makes no password file.
  const providersOnly = !config.auth.passwordSignIn && config.oidc.providers.length > 0;
  if (!providersOnly) {
    const pool = new HashWorkerPool(1);
    const password = await bootstrapAdminIfMissing(config.auth.htpasswd, pool, config.auth.bcryptCost).finally(() => pool.close());
    // Only on a first start: the primary does not load the gateway otherwise (docs/performance.md "Memory").
    if (password) (await import('./gateway.ts')).printAdminPassword(BOOTSTRAP_USER, password, config.auth.htpasswd);
  }
  // Logged here, where it is made: the workers find it made.
  const certificate = config.tls.enabled ? await ensureCertificate(config.tls) : undefined;
  if (certificate?.generated) logger.info({ cert: certificate.cert, reason: certificate.reason, keptKey: certificate.keptKey }, 'generated a self-signed TLS certificate; clients can trust it with MLFLOW_TRACKING_SERVER_CERT_PATH');

  // Lockouts and sign-outs the workers share (with state.redis, Redis holds them instead), and the
  // workers' metrics gathered for a scrape (prom-client and metrics.ts loaded by the first one).
  new WorkerStateHub(
    !config.state.redis && config.lockout.enabled ? new Lockout(config.lockout, logger) : undefined,
    config.metrics.enabled ? async () => (await import('./metrics.ts')).workersMetrics() : undefined,
  );

  let stopping = false;
  let anyListened = false;
  const fork = () => cluster.fork();
  cluster.on('listening', () => {
    anyListened = true;
  });
  cluster.on('exit', (worker, code, signal) => {
    // A worker that dies before any worker ever listened (the port in use, a bad certificate) would
    // die the same way each time it is restarted: stop instead, with its error above.
    if (!anyListened && !stopping) {
      stopping = true;
      logger.error({ workerPid: worker.process.pid, code, signal }, 'a worker failed to start; stopping (its error is above)');
      logger.flush();
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
      process.exitCode = 1;
      return;
    }
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info('mlgate stopped');
        logger.flush();
        process.exit(process.exitCode ?? 0);
      }
      return;
    }
    logger.error({ workerPid: worker.process.pid, code, signal }, 'worker died; starting another');
    setTimeout(fork, RESTART_DELAY_MS).unref();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1); // a second Ctrl-C means now
    stopping = true;
    logger.info({ signal }, 'shutting down workers: finishing in-flight requests');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // A service manager's reload reaches the primary only: each worker re-reads its files.
  process.on('SIGHUP', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
  });
  for (let i = 0; i < count; i++) fork();
  logger.info({ workers: count }, 'mlgate primary started its workers');
}
