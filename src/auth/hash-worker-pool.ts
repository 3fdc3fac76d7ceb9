import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HashResult, HashTask } from './hash-worker.ts';

/** Beyond this many queued checks, new ones are refused instead of piling up in memory. */
const MAX_PENDING = 1024;
/**
 * A thread is a whole V8 instance (~11 MB resident). With the credential cache, hashes are checked
 * only for new credentials, so threads start when needed and stop after this long without work.
 * Starting one measured 20-90 ms against 220-600 ms for one bcrypt cost-12 check, so a short idle
 * costs an occasional new sign-in little, and an idle gateway gets the memory back sooner.
 */
const IDLE_THREAD_MS = 10_000;
/**
 * bcrypt and SHA-crypt keep a few small arrays alive, so V8's default heap sizes only let garbage
 * pile up. These limits measured ~2.7 MB less per thread (10.7-11.1 MB against 13.4-14.0 MB,
 * three runs each) at the same time per check; a thread out of memory fails its checks (the
 * 'error' path below), not the process.
 */
const THREAD_LIMITS = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

type Pending = { resolve: (result: HashResult) => void; reject: (error: Error) => void };
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  idleTimer?: NodeJS.Timeout;
}

export class HashPoolBusyError extends Error {
  constructor() {
    super('too many password checks are queued');
  }
}

/** Password hashing and verification off the event loop, in worker threads. */
export class HashWorkerPool {
  private readonly slots: Slot[] = [];
  private readonly size: number;
  private readonly script = workerScript();
  private nextId = 1;
  private closed = false;

  constructor(size: number | 'auto', private readonly idleThreadMs = IDLE_THREAD_MS) {
    this.size = size === 'auto' ? Math.max(1, availableParallelism() - 1) : size;
  }

  get pendingCount(): number {
    return this.slots.reduce((sum, slot) => sum + slot.pending.size, 0);
  }

  /** Threads running now (they start on demand and stop when idle). */
  get threadCount(): number {
    return this.slots.length;
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
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((slot) => {
      clearTimeout(slot.idleTimer);
      return slot.worker.terminate();
    }));
  }

  private run(task: DistributiveOmit<HashTask, 'id'>): Promise<HashResult> {
    if (this.closed) return Promise.reject(new Error('the hash worker pool is closed'));
    if (this.pendingCount >= MAX_PENDING) return Promise.reject(new HashPoolBusyError());
    const slot = this.pickSlot();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      clearTimeout(slot.idleTimer);
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ ...task, id });
    });
  }

  /** The least busy thread, starting another while some are busy and the pool is not full. */
  private pickSlot(): Slot {
    const idle = this.slots.find((slot) => slot.pending.size === 0);
    if (idle) return idle;
    if (this.slots.length < this.size) return this.startSlot();
    return this.slots.reduce((best, slot) => (slot.pending.size < best.pending.size ? slot : best));
  }

  private startSlot(): Slot {
    const slot: Slot = { worker: new Worker(this.script, { resourceLimits: THREAD_LIMITS }), pending: new Map() };
    const retire = () => {
      const index = this.slots.indexOf(slot);
      if (index !== -1) this.slots.splice(index, 1);
    };
    slot.worker.on('message', (result: HashResult) => {
      const waiting = slot.pending.get(result.id);
      slot.pending.delete(result.id);
      if (slot.pending.size === 0) {
        slot.worker.unref(); // idle threads never keep the process alive
        slot.idleTimer = setTimeout(() => {
          retire();
          void slot.worker.terminate();
        }, this.idleThreadMs).unref();
      }
      waiting?.resolve(result);
    });
    slot.worker.on('error', (error) => {
      retire();
      for (const waiting of slot.pending.values()) waiting.reject(error);
      slot.pending.clear();
    });
    slot.worker.on('exit', retire);
    this.slots.push(slot);
    return slot;
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
