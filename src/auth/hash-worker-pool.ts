import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HashResult, HashTask } from './hash-worker.ts';

/** Beyond this many queued checks, new ones are refused instead of piling up in memory. */
const MAX_PENDING = 1024;

type Pending = { resolve: (result: HashResult) => void; reject: (error: Error) => void };
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

export class HashPoolBusyError extends Error {
  constructor() {
    super('too many password checks are queued');
  }
}

/** Password hashing and verification off the event loop, in worker threads. */
export class HashWorkerPool {
  private readonly workers: { worker: Worker; pending: Map<number, Pending> }[] = [];
  private nextId = 1;

  constructor(size: number | 'auto') {
    const count = size === 'auto' ? Math.max(1, availableParallelism() - 1) : size;
    const script = workerScript();
    for (let i = 0; i < count; i++) {
      const worker = new Worker(script);
      const slot = { worker, pending: new Map<number, Pending>() };
      worker.on('message', (result: HashResult) => {
        const waiting = slot.pending.get(result.id);
        slot.pending.delete(result.id);
        if (slot.pending.size === 0) worker.unref(); // idle workers never keep the process alive
        waiting?.resolve(result);
      });
      worker.on('error', (error) => {
        for (const waiting of slot.pending.values()) waiting.reject(error);
        slot.pending.clear();
      });
      worker.unref();
      this.workers.push(slot);
    }
  }

  get pendingCount(): number {
    return this.workers.reduce((sum, slot) => sum + slot.pending.size, 0);
  }

  async verify(hash: string, password: string): Promise<boolean> {
    const result = await this.run({ kind: 'verify', hash, password });
    return result.ok && !result.error;
  }

  async hash(password: string, cost: number): Promise<string> {
    const result = await this.run({ kind: 'hash', password, cost });
    if (!result.hash) throw new Error(result.error ?? 'hashing failed');
    return result.hash;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((slot) => slot.worker.terminate()));
  }

  private run(task: DistributiveOmit<HashTask, 'id'>): Promise<HashResult> {
    if (this.pendingCount >= MAX_PENDING) return Promise.reject(new HashPoolBusyError());
    const slot = this.workers.reduce((best, slot) => (slot.pending.size < best.pending.size ? slot : best));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ ...task, id });
    });
  }
}

/**
 * Built code runs the compiled worker directly. Under tsx or vitest the worker is TypeScript, and a
 * worker does not inherit the loader hooks, so a tiny bootstrap registers tsx first.
 */
function workerScript(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL('./hash-worker.js', import.meta.url);
  // require.resolve finds the CommonJS build; its ES module twin sits beside it.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const worker = new URL('./hash-worker.ts', import.meta.url).href;
  const bootstrap = `const { register } = await import(${JSON.stringify(tsx)}); register(); await import(${JSON.stringify(worker)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`);
}
