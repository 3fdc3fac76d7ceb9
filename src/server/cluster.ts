import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { bootstrapAdminIfMissing, BOOTSTRAP_USER } from '../auth/bootstrap-admin.ts';
import { HashWorkerPool } from '../auth/hash-worker-pool.ts';
import { Lockout } from '../auth/lockout.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { WorkerStateHub } from '../state/worker-state.ts';
import { ensureCertificate } from './certificate.ts';

/** Restarting a worker that keeps dying right away would only spin; wait this long first. */
const RESTART_DELAY_MS = 1000;

export function workerCount(workers: Config['workers']): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/**
 * The primary of `workers: N`: it does the first-start work once (admin user, self-signed
 * certificate) so workers do not race to create files, then runs N gateway processes that share
 * the port, restarts any that die, and on SIGTERM/SIGINT lets each finish its requests. Without
 * state.redis it also keeps the workers' lockout counts and sign-outs (src/state/worker-state.ts), so
 * that limits mean the same with one process or several.
 */
export async function runPrimary(config: Config, count: number, logger: Logger): Promise<void> {
  const pool = new HashWorkerPool(1);
  const password = await bootstrapAdminIfMissing(config.auth.htpasswd, pool, config.auth.bcryptCost).finally(() => pool.close());
  // Only on a first start: the primary does not load the gateway otherwise (docs/performance.md "Memory").
  if (password) (await import('./gateway.ts')).printAdminPassword(BOOTSTRAP_USER, password, config.auth.htpasswd);
  if (config.tls.enabled) await ensureCertificate(config.tls);

  // Lockouts and sign-outs the workers share (with state.redis, Redis holds them instead).
  if (!config.state.redis) new WorkerStateHub(config.lockout.enabled ? new Lockout(config.lockout, logger) : undefined);

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
