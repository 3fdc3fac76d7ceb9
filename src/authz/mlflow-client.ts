// The one way mlgate calls MLflow's REST API itself, rather than forwarding a user's request: the
// authorization look-ups (resolver.ts) and grant management (grants-client.ts, for the grant CLI
// and the permissions API). Both reach MLflow, fail and read tags alike through it.
//
// MLflow behind the gateway has no authentication of its own, so plain calls work. node:http(s),
// not fetch, which refuses the spec's "bad ports" (6000, 6665-6669, ...) where someone may run MLflow.
import http from 'node:http';
import https from 'node:https';
import { noServerUp } from '../proxy/upstream-errors.ts';
import { poolOf, type Upstream, type UpstreamPool, type UpstreamServer } from '../proxy/upstream-pool.ts';

import { DEFAULT_WORKSPACE, WORKSPACE_HEADER } from './workspace.ts';

type Json = Record<string, unknown>;

export interface Tag {
  key: string;
  value: string;
}

/** Larger than any page MLflow gives (search results included), small enough to stay a bound. */
const MAX_ANSWER_BYTES = 256 * 2 ** 20;

/** An experiment or registered model as MLflow describes it: what a permission decision reads. */
export interface TaggedResource {
  /** The experiment id; registered models have none (they are known by name). */
  id?: string;
  name: string;
  tags: readonly Tag[];
}

/**
 * RESOURCE_DOES_NOT_EXIST and INVALID_PARAMETER_VALUE are MLflow's own error codes, passed on;
 * UNREACHABLE and TIMED_OUT mean no answer came; UPSTREAM_ERROR is any other answer but a success.
 */
type MlflowErrorCode = 'RESOURCE_DOES_NOT_EXIST' | 'INVALID_PARAMETER_VALUE' | 'UNREACHABLE' | 'TIMED_OUT' | 'UPSTREAM_ERROR';

/** Everything a call to MLflow throws; `message` says it for a person and names the upstream. */
export class MlflowError extends Error {
  /** The connection was refused: nothing of the call reached the server. */
  refused = false;

  constructor(readonly code: MlflowErrorCode, message: string, readonly upstreamStatus?: number) {
    super(message);
    this.name = 'MlflowError';
  }
}

export interface MlflowAnswer {
  status: number;
  /** The body, if it is a JSON object (MLflow answers errors with one too). */
  json: Json | undefined;
  text: string;
  /** The server that answered (one of a list's). */
  origin?: string;
}

interface MlflowClientOptions {
  /**
   * The MLflow server, or its servers: a list (each call goes to one, another when its connection
   * is refused) or the gateway's pool (its health checks decide which are up).
   */
  upstream: Upstream;
  /** How long MLflow may stay silent during one call. */
  timeoutMs: number;
  /** Sent with the value `mlgate` (proxy.userHeader), so MLflow's logs tell mlgate's own calls apart. */
  userHeader?: string;
}

export class MlflowClient {
  /** The upstream's origin (its servers' origins, comma-separated), as messages name it (the gateway forwards to the origin too). */
  readonly origin: string;
  private readonly pool: UpstreamPool;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(options: MlflowClientOptions) {
    this.pool = poolOf(options.upstream);
    this.origin = this.pool.servers.map((server) => server.origin).join(', ');
    // One scheme per upstream (the schema checks it): one agent for all its servers.
    const secure = this.pool.servers[0]!.url.protocol === 'https:';
    this.transport = secure ? https : http;
    // Idle sockets are unref'd by the agent, so a CLI command still exits when it is done.
    this.agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 64, maxFreeSockets: 16, timeout: 2000 });
    this.timeoutMs = options.timeoutMs;
    this.headers = { accept: 'application/json', ...(options.userHeader ? { [options.userHeader.toLowerCase()]: 'mlgate' } : {}) };
  }

  /**
   * One call to `target` (path and query) with `body` as JSON, in `workspace` (default: MLflow's default one). Resolves with whatever MLflow
   * answered, any status; throws an MlflowError (UNREACHABLE or TIMED_OUT) when no answer came.
   */
  request(method: 'GET' | 'POST' | 'DELETE', target: string, body?: Json, workspace?: string): Promise<MlflowAnswer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let headers = payload === undefined ? this.headers : { ...this.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) };
    // MLflow 3.10+ acts in the workspace this header names; none is the default workspace (and the
    // only form a server without --enable-workspaces takes).
    if (workspace !== undefined && workspace !== DEFAULT_WORKSPACE) headers = { ...headers, [WORKSPACE_HEADER]: workspace };
    const tried = new Set<UpstreamServer>();
    const attempt = (): Promise<MlflowAnswer> => {
      const server = this.pool.choose(tried);
      if (!server) return Promise.reject(new MlflowError('UNREACHABLE', noServerUp(this.pool.servers).message));
      tried.add(server);
      return this.send(server, method, target, headers, payload).catch((err: unknown) => {
        // Refused: nothing was sent, so another server may take it.
        if (!(err instanceof MlflowError && err.refused)) throw err;
        server.refused('ECONNREFUSED');
        return tried.size < this.pool.servers.length ? attempt() : Promise.reject(err);
      });
    };
    return attempt();
  }

  private send(server: UpstreamServer, method: string, target: string, headers: Record<string, string>, payload: string | undefined): Promise<MlflowAnswer> {
    const ended = server.begin();
    return new Promise<MlflowAnswer>((resolve, reject) => {
      const failed = (err: Error) => reject(err instanceof MlflowError ? err : this.unreachable(err, server.origin));
      const req = this.transport.request(new URL(target, server.url), { method, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          // A look-up's answer is a page of JSON; one without end (a misconfigured upstream answering
          // with a file) must not take the gateway's memory with it.
          if (received > MAX_ANSWER_BYTES) return req.destroy(new MlflowError('UPSTREAM_ERROR', `the MLflow tracking server at ${server.origin} answered ${method} ${target.split('?')[0]} with more than ${MAX_ANSWER_BYTES / 2 ** 20} MiB`));
          chunks.push(chunk);
        });
        res.on('error', failed);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Json | undefined;
          try {
            json = jsonObject(JSON.parse(text));
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json, text, origin: server.origin });
        });
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new MlflowError('TIMED_OUT', `the MLflow tracking server at ${server.origin} did not answer within ${this.timeoutMs / 1000} s`)));
      req.on('error', failed);
      req.end(payload);
    }).finally(ended);
  }

  /** The JSON object of a successful answer; any other answer throws an MlflowError naming `what` was asked. */
  objectOf(answer: MlflowAnswer, what: string): Json {
    const success = answer.status >= 200 && answer.status < 300;
    if (success && answer.json) return answer.json;
    const server = `the MLflow tracking server at ${answer.origin ?? this.origin}`;
    if (success) throw new MlflowError('UPSTREAM_ERROR', `${server} answered ${what} with something that is not a JSON object`, answer.status);
    const code = errorCodeOf(answer);
    const message = typeof answer.json?.message === 'string' ? answer.json.message : answer.text.slice(0, 200).trim();
    const known = code === 'RESOURCE_DOES_NOT_EXIST' || code === 'INVALID_PARAMETER_VALUE' ? code : 'UPSTREAM_ERROR';
    throw new MlflowError(known, `${server} answered ${what} with ${answer.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`, answer.status);
  }

  close(): void {
    this.agent.destroy();
  }

  private unreachable(err: NodeJS.ErrnoException, origin: string): MlflowError {
    const reason = err.code ?? err.message;
    const url = new URL(origin);
    const hint = reason === 'ECONNREFUSED' || reason === 'ENOTFOUND' || reason === 'EHOSTUNREACH'
      ? `; is it running? Start it with: mlflow server --host ${url.hostname} --port ${url.port || (url.protocol === 'https:' ? 443 : 80)}, or point --upstream at it`
      : '';
    const unreachable = new MlflowError('UNREACHABLE', `cannot reach the MLflow tracking server at ${origin} (${reason})${hint}`);
    unreachable.refused = reason === 'ECONNREFUSED';
    return unreachable;
  }
}

/** MLflow's error_code of a failed answer (RESOURCE_DOES_NOT_EXIST, ...), if it gave one. */
export function errorCodeOf(answer: MlflowAnswer): string | undefined {
  const code = answer.json?.error_code;
  return typeof code === 'string' ? code : undefined;
}

/** The value if it is a JSON object (not null, not an array). */
export function jsonObject(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

/**
 * MLflow's `[{key, value}]` list of an experiment's or model's tags. MLflow always sends both as
 * strings (a tag set to "" too), so any other entry is malformed and skipped.
 */
export function tagsFrom(value: unknown): Tag[] {
  if (!Array.isArray(value)) return [];
  const tags: Tag[] = [];
  for (const entry of value) {
    const tag = jsonObject(entry);
    if (typeof tag?.key === 'string' && typeof tag.value === 'string') tags.push({ key: tag.key, value: tag.value });
  }
  return tags;
}
