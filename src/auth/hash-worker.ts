// Runs in a worker thread: bcrypt and SHA-crypt cost tens to hundreds of ms of CPU each.
import { parentPort } from 'node:worker_threads';
import { hashPassword, verifyHash } from './htpasswd-formats.ts';

export type HashTask =
  | { id: number; kind: 'verify'; hash: string; password: string }
  | { id: number; kind: 'hash'; password: string; cost: number };
export type HashResult = { id: number; ok: boolean; hash?: string; error?: string };

async function run(task: HashTask): Promise<HashResult> {
  try {
    return task.kind === 'verify'
      ? { id: task.id, ok: await verifyHash(task.hash, task.password) }
      : { id: task.id, ok: true, hash: await hashPassword(task.password, task.cost) };
  } catch (err) {
    return { id: task.id, ok: false, error: String(err) };
  }
}

// One task at a time, in arrival order. bcryptjs's async functions yield between rounds, so tasks
// started together would interleave and all finish together, at the end: ten queued checks would
// each take as long as all ten, and a lockout would only count failures once the batch is done.
let queue = Promise.resolve();
parentPort?.on('message', (task: HashTask) => {
  queue = queue.then(async () => parentPort!.postMessage(await run(task)));
});
