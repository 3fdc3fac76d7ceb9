// The state the worker processes of one gateway (`workers` above 1) share through their primary,
// when no Redis is configured (with `state.redis`, Redis is the shared store): failed sign-ins are
// counted by the primary, which tells every worker of a lockout before the failing attempt is
// answered; a sign-in clears a user's count everywhere; a sign-out, a grant change and a token
// revoked reach every worker before they are answered. Workers check their own copy on the request
// path, so a request that changes nothing never waits for the primary. A worker that (re)starts is
// sent the state so far when it subscribes, which is before it listens: the primary hands it
// connections only after that reply (grants and tokens need none: a new worker's caches are empty
// and it reads the tokens file at start).
//
// With or without Redis, a scrape of /-/metrics asks the primary for every worker's numbers
// (src/server/metrics.ts).
import cluster, { type Worker } from 'node:cluster';
import type { GrantChange } from './grant-invalidation.ts';
import { boundedCache } from './bounded-cache.ts';

/**
 * How long the primary waits for every worker to apply a lockout or sign-out before it answers the
 * worker that reported it, and how long that worker waits for the answer. Past it, a worker stuck in
 * a long task learns late, and a reporting worker whose primary is gone counts alone.
 */
const PEER_TIMEOUT_MS = 2000;
/** Sign-outs the primary keeps for workers that restart (the revocations file holds them all). */
const MAX_SIGN_OUTS = 100_000;
/**
 * How long a worker waits for the whole gateway's metrics: the primary gives the workers 5 s to
 * answer (prom-client's AggregatorRegistry), so a scrape of a gateway with a stuck worker fails
 * rather than reporting part of the gateway as the whole.
 */
const METRICS_TIMEOUT_MS = 6000;

type Topic = 'lockout' | 'sessions' | 'grants' | 'tokens';

type LockScope = 'ip' | 'user';

/** The lock lengths (ms) a failure started, 0 for none. */
export interface LocksStarted { ip: number; user: number }

/** What a worker that (re)starts is told: the locks in force, the known IPs (Lockout's keys), each with the ms left. */
export interface LockoutSnapshot {
  locks: { scope: LockScope; key: string; ms: number }[];
  knownIps: [string, number][];
}

/** The primary's own Lockout, as the hub uses it: it counts, and the workers only hold what it decided. */
interface FailureCounter {
  countFailure(ip: string, user: string): LocksStarted;
  recordSuccess(ip: string, user: string): void;
  snapshot(): LockoutSnapshot;
}

type ToPrimary =
  | { mlgateState: 'subscribe'; topic: Topic }
  | { mlgateState: 'failure'; id: number; ip: string; user: string }
  | { mlgateState: 'signed-in'; ip: string; user: string }
  | { mlgateState: 'signed-out'; id: number; session: string; expiresAt: number }
  | { mlgateState: 'grants-changed'; id: number; change: GrantChange }
  | { mlgateState: 'tokens-changed'; id: number }
  | { mlgateState: 'metrics'; id: number }
  | { mlgateState: 'applied'; id: number };

type ToWorker =
  | { mlgateState: 'lockout-state'; snapshot: LockoutSnapshot }
  | { mlgateState: 'sessions-state'; signedOut: [string, number][] }
  | { mlgateState: 'lock'; id: number; scope: LockScope; key: string; ms: number }
  | { mlgateState: 'signed-in'; ip: string; user: string }
  | { mlgateState: 'signed-out'; id: number; session: string; expiresAt: number }
  | { mlgateState: 'grants-changed'; id: number; change: GrantChange }
  | { mlgateState: 'tokens-changed'; id: number }
  | { mlgateState: 'done'; id: number; started?: LocksStarted; metrics?: { contentType: string; body: string } };

/** What a worker's Lockout hears from the primary. */
interface LockoutListener {
  restore(snapshot: LockoutSnapshot): void;
  locked(scope: LockScope, key: string, ms: number): void;
  signedIn(ip: string, user: string): void;
}

/** What a worker's SessionRevocations hears from the primary. */
interface SessionsListener {
  signedOut(entries: [session: string, expiresAt: number][]): void;
}

/** A worker's side of the channel to its primary. */
export class PrimaryChannel {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: ToWorker & { mlgateState: 'done' }) => void>();
  private lockout: LockoutListener | undefined;
  private sessions: SessionsListener | undefined;
  private grants: ((change: GrantChange) => void) | undefined;
  private tokens: (() => void) | undefined;

  constructor() {
    process.on('message', (message: unknown) => this.receive(message));
  }

  /** Told of lockouts and sign-ins from now on, and at once of the locks in force. */
  subscribeLockout(listener: LockoutListener): void {
    this.lockout = listener;
    this.send({ mlgateState: 'subscribe', topic: 'lockout' });
  }

  /** Told of sign-outs from now on, and at once of those the primary knows. */
  subscribeSessions(listener: SessionsListener): void {
    this.sessions = listener;
    this.send({ mlgateState: 'subscribe', topic: 'sessions' });
  }

  /** Told of grant changes made through the other workers: `drop` empties this worker's permission caches for that resource. */
  subscribeGrants(drop: (change: GrantChange) => void): void {
    this.grants = drop;
    this.send({ mlgateState: 'subscribe', topic: 'grants' });
  }

  /** Told of tokens revoked through the other workers: `reread` reads tokens.file again. */
  subscribeTokens(reread: () => void): void {
    this.tokens = reread;
    this.send({ mlgateState: 'subscribe', topic: 'tokens' });
  }

  /** Resolves with the locks the failure started once every worker holds them; undefined if the primary did not answer. */
  failure(ip: string, user: string): Promise<LocksStarted | undefined> {
    return this.ask((id) => ({ mlgateState: 'failure', id, ip, user })).then((reply) => reply?.started);
  }

  signedIn(ip: string, user: string): void {
    this.send({ mlgateState: 'signed-in', ip, user });
  }

  /** Resolves true once every worker refuses the session, false if the primary did not answer. */
  signedOut(session: string, expiresAt: number): Promise<boolean> {
    return this.ask((id) => ({ mlgateState: 'signed-out', id, session, expiresAt })).then((reply) => reply !== undefined);
  }

  /** Resolves true once every other worker dropped the resource's cached permissions, false if the primary did not answer. */
  grantsChanged(change: GrantChange): Promise<boolean> {
    return this.ask((id) => ({ mlgateState: 'grants-changed', id, change })).then((reply) => reply !== undefined);
  }

  /** Resolves true once every other worker re-read tokens.file, false if the primary did not answer. */
  tokensChanged(): Promise<boolean> {
    return this.ask((id) => ({ mlgateState: 'tokens-changed', id })).then((reply) => reply !== undefined);
  }

  /** The exposition of every worker's metrics together; undefined when the primary could not gather them. */
  metrics(): Promise<{ contentType: string; body: string } | undefined> {
    return this.ask((id) => ({ mlgateState: 'metrics', id }), METRICS_TIMEOUT_MS).then((reply) => reply?.metrics);
  }

  private ask(message: (id: number) => ToPrimary, timeoutMs = PEER_TIMEOUT_MS): Promise<(ToWorker & { mlgateState: 'done' }) | undefined> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      if (!this.send(message(id))) return resolve(undefined);
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(reply);
      });
    });
  }

  private send(message: ToPrimary): boolean {
    if (!process.connected || !process.send) return false;
    // A channel that closes meanwhile (the primary gone): the worker exits anyway.
    process.send(message, undefined, {}, () => undefined);
    return true;
  }

  private receive(raw: unknown): void {
    if (typeof raw !== 'object' || raw === null || !('mlgateState' in raw)) return;
    const message = raw as ToWorker;
    switch (message.mlgateState) {
      case 'done':
        this.waiting.get(message.id)?.(message);
        return;
      case 'lockout-state':
        this.lockout?.restore(message.snapshot);
        return;
      case 'sessions-state':
        this.sessions?.signedOut(message.signedOut);
        return;
      case 'lock':
        this.lockout?.locked(message.scope, message.key, message.ms);
        this.send({ mlgateState: 'applied', id: message.id });
        return;
      case 'signed-in':
        this.lockout?.signedIn(message.ip, message.user);
        return;
      case 'signed-out':
        this.sessions?.signedOut([[message.session, message.expiresAt]]);
        this.send({ mlgateState: 'applied', id: message.id });
        return;
      case 'grants-changed':
        this.grants?.(message.change);
        this.send({ mlgateState: 'applied', id: message.id });
        return;
      case 'tokens-changed':
        this.tokens?.();
        this.send({ mlgateState: 'applied', id: message.id });
        return;
    }
  }
}

let channel: PrimaryChannel | undefined;

/**
 * This worker's channel to its primary; undefined outside a cluster worker. Found by the stores
 * themselves (one per process), so that what makes them need not know about workers.
 */
export function primaryChannel(): PrimaryChannel | undefined {
  if (!cluster.isWorker || !process.send) return undefined;
  channel ??= new PrimaryChannel();
  return channel;
}

/**
 * The primary's side: counts failed sign-ins for every worker (bounded as one gateway's Lockout is),
 * keeps recent sign-outs for workers that restart, relays them and grant changes and token
 * revocations, and gathers the workers' metrics for a scrape.
 */
export class WorkerStateHub {
  private readonly signedOut = boundedCache<string, number>(MAX_SIGN_OUTS);
  private readonly subscribers: Record<Topic, Set<Worker>> = { lockout: new Set(), sessions: new Set(), grants: new Set(), tokens: new Set() };
  private nextId = 1;
  /** Broadcasts waiting for workers to apply them: id -> the workers yet to answer, and what to do then. */
  private readonly pending = new Map<number, { left: Set<Worker>; done: () => void }>();

  /**
   * `lockout`: undefined when lockout.enabled is false or Redis counts. `metrics`: every worker's
   * metrics as one exposition (undefined when metrics.enabled is false); rejects when a worker did
   * not answer.
   */
  constructor(private readonly lockout: FailureCounter | undefined, private readonly metrics?: () => Promise<{ contentType: string; body: string }>) {
    cluster.on('message', (worker, message: unknown) => this.receive(worker, message));
    cluster.on('exit', (worker) => {
      for (const subscribers of Object.values(this.subscribers)) subscribers.delete(worker);
      for (const waiting of this.pending.values()) this.applied(waiting, worker);
    });
  }

  private receive(worker: Worker, raw: unknown): void {
    if (typeof raw !== 'object' || raw === null || !('mlgateState' in raw)) return;
    const message = raw as ToPrimary;
    switch (message.mlgateState) {
      case 'subscribe':
        this.subscribers[message.topic].add(worker);
        // Answered at once: it reaches the worker before any connection the primary hands it.
        if (message.topic === 'lockout') send(worker, { mlgateState: 'lockout-state', snapshot: this.lockout?.snapshot() ?? { locks: [], knownIps: [] } });
        else if (message.topic === 'sessions') send(worker, { mlgateState: 'sessions-state', signedOut: this.currentSignOuts() });
        return;
      case 'failure': {
        const started = this.lockout?.countFailure(message.ip, message.user) ?? { ip: 0, user: 0 };
        const locks: Promise<void>[] = [];
        if (started.ip) locks.push(this.broadcast('lockout', worker, (id) => ({ mlgateState: 'lock', id, scope: 'ip', key: message.ip, ms: started.ip })));
        if (started.user) locks.push(this.broadcast('lockout', worker, (id) => ({ mlgateState: 'lock', id, scope: 'user', key: message.user, ms: started.user })));
        void Promise.all(locks).then(() => send(worker, { mlgateState: 'done', id: message.id, started }));
        return;
      }
      case 'signed-in':
        this.lockout?.recordSuccess(message.ip, message.user);
        for (const other of this.subscribers.lockout) if (other !== worker) send(other, { mlgateState: 'signed-in', ip: message.ip, user: message.user });
        return;
      case 'signed-out':
        this.signedOut.set(message.session, Math.max(message.expiresAt, this.signedOut.get(message.session) ?? 0));
        void this.broadcast('sessions', worker, (id) => ({ mlgateState: 'signed-out', id, session: message.session, expiresAt: message.expiresAt }))
          .then(() => send(worker, { mlgateState: 'done', id: message.id }));
        return;
      case 'grants-changed':
        void this.broadcast('grants', worker, (id) => ({ mlgateState: 'grants-changed', id, change: message.change }))
          .then(() => send(worker, { mlgateState: 'done', id: message.id }));
        return;
      case 'tokens-changed':
        void this.broadcast('tokens', worker, (id) => ({ mlgateState: 'tokens-changed', id }))
          .then(() => send(worker, { mlgateState: 'done', id: message.id }));
        return;
      case 'metrics':
        // A worker that did not answer (stuck, or still starting): the scrape fails rather than report part of the gateway as all of it.
        if (!this.metrics) send(worker, { mlgateState: 'done', id: message.id });
        else this.metrics().then((metrics) => send(worker, { mlgateState: 'done', id: message.id, metrics }), () => send(worker, { mlgateState: 'done', id: message.id }));
        return;
      case 'applied': {
        const waiting = this.pending.get(message.id);
        if (waiting) this.applied(waiting, worker);
        return;
      }
    }
  }

  /** Sends to every subscriber but the one that reported it; resolves when all applied it (or the timeout). */
  private broadcast(topic: Topic, origin: Worker, message: (id: number) => ToWorker): Promise<void> {
    const id = this.nextId++;
    const left = new Set([...this.subscribers[topic]].filter((worker) => worker !== origin));
    if (left.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), PEER_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve();
      };
      this.pending.set(id, { left, done: finish });
      for (const worker of left) send(worker, message(id));
    });
  }

  private applied(waiting: { left: Set<Worker>; done: () => void }, worker: Worker): void {
    waiting.left.delete(worker);
    if (waiting.left.size === 0) waiting.done();
  }

  private currentSignOuts(): [string, number][] {
    const now = Date.now() / 1000;
    return [...this.signedOut.entries()].filter(([, expiresAt]) => expiresAt > now);
  }
}

function send(worker: Worker, message: ToWorker): void {
  // A worker that is exiting: it is forgotten on 'exit'.
  if (worker.isConnected()) worker.send(message, undefined, () => undefined);
}
