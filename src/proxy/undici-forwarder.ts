// The HTTP forwarder on undici (proxy.forwarder: undici): one kept-alive undici Pool per upstream
// server, each request dispatched with a low-level handler that writes straight into the client's
// response. It keeps the http-proxy forwarder's contract (forwarder.ts): the same headers in and
// out, Location rewriting, streaming both ways with backpressure, aborts both ways, the silence
// timeout, the same 502/504/413 answers and the pool's retry rules. WebSocket tunnels stay on the
// http-proxy forwarder, which this one hands them to.
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { Dispatcher, Pool as UndiciPool, util as UndiciUtil } from 'undici';
import type { RequestContext, UpstreamExchange } from '../context/request-context.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import { answerOnce, createForwarder, filterFailed, IDLE_UPSTREAM_SOCKET_MS, MAX_TRANSFORMED_RESPONSE, silenceSweepMs, tooLargeError, writeUpstreamHead, type Forwarder, type ForwarderOptions, type ForwardOptions } from './forwarder.ts';
import { upstreamFailure } from './upstream-errors.ts';
import type { UpstreamServer } from './upstream-pool.ts';

// undici's index loads all of undici (fetch, WebSocket, caches, mocks): 2.8 MB more resident in an
// idle gateway (80.4-81.0 MB against 77.6-78.2, three runs each) for the two things used here. Its
// package has no exports map, so these files can be required, though they are not a documented
// API: should a later undici move them, the gateway stops at start-up (and every test with it).
const requireUndici = createRequire(import.meta.url);
const Pool = requireUndici('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
const undiciUtil = requireUndici('undici/lib/core/util.js') as typeof UndiciUtil;

/** Request headers undici frames itself (and refuses to be given): the body's framing and the connection's. */
const FRAMED_BY_UNDICI: ReadonlySet<string> = new Set(['transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'expect', 'host']);

/** How much of an answer may wait in the client's buffer before undici is paused (see onData): a bound per download, as http-proxy's buffers are. */
const PAUSE_ABOVE = 64 * 1024;

/** Errors of the connection attempt itself: nothing of the request can have left. */
const CONNECT_ERRORS: ReadonlySet<string | undefined> = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT']);

/** undici's own names for a broken connection, in the words the http-proxy forwarder's answers use. */
const SOCKET_ERROR_CODES: Readonly<Record<string, string>> = { UND_ERR_SOCKET: 'ECONNRESET', UND_ERR_CLOSED: 'ECONNRESET' };

interface UndiciExchange extends UpstreamExchange {
  server: UpstreamServer;
  tried?: Set<UpstreamServer>;
  endAttempt: () => void;
  /** Cuts the current attempt (undici's abort); undefined until it has a connection. */
  abort?: (err?: Error) => void;
  /** Sends the request again, to another server; undefined when the gateway does not hold all of it. */
  resend?: (server: UpstreamServer) => void;
  /** The upstream connection of the current attempt, and its bytesWritten before the request's headers. */
  upstreamSocket?: Socket;
  bytesBefore?: number;
  reusedSocket: boolean;
  /** The answer's head reached the client (or was read whole for a transform): no other answer now. */
  responded: boolean;
}

/** Like createForwarder, with HTTP requests sent through undici; upgrades still go through http-proxy. */
export function createUndiciForwarder(options: ForwarderOptions): Forwarder {
  const { pool, timeoutMs, maxBodySize, rewriteLocation } = options;
  const tunnels = createForwarder(options);
  noteSockets();
  // undici's own keep-alive expiry replaces the http-proxy forwarder's idle sweep: the same limit,
  // under uvicorn's 5 s, and a server's Keep-Alive hint lowers it further.
  const dispatchers = new Map(pool.servers.map((server) => [server, new Pool(server.url.origin, {
    connections: null,
    pipelining: 1,
    keepAliveTimeout: IDLE_UPSTREAM_SOCKET_MS,
    keepAliveMaxTimeout: IDLE_UPSTREAM_SOCKET_MS,
    // Silence is timed by the sweep below, both ways at once, as the other forwarder does.
    headersTimeout: 0,
    bodyTimeout: 0,
  })] as const));

  const waiting = new Set<UndiciExchange>();
  const sweepMs = silenceSweepMs(timeoutMs);
  let tick = 0;
  const sweep = setInterval(() => {
    tick++;
    for (const state of waiting) {
      if ((tick - state.lastActivity - 1) * sweepMs < timeoutMs) continue;
      state.ctx.upstreamTimedOut = true;
      waiting.delete(state);
      state.abort?.(new TimeoutError());
    }
  }, sweepMs);
  sweep.unref();

  function web(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, server: UpstreamServer, fail: (error: GatewayError) => void, forward?: ForwardOptions): void {
    const body = forward?.body;
    if (maxBodySize > 0 && (body ? body.length : Number(req.headers['content-length'] ?? 0)) > maxBodySize) return fail(tooLargeError(maxBodySize));
    const state: UndiciExchange = {
      ctx, lastActivity: tick, fail, tooLarge: false, answered: false, transform: forward?.transformResponse,
      server, endAttempt: () => {}, responded: false, reusedSocket: false,
    };
    ctx.exchange = state;
    res.once('close', () => {
      waiting.delete(state);
      state.endAttempt();
      // The client left before the answer ended: the upstream request goes too.
      if (!res.writableFinished) state.abort?.();
    });
    if (state.transform) delete req.headers['accept-encoding'];
    if (body) {
      req.headers['content-length'] = String(body.length);
      delete req.headers['transfer-encoding'];
      delete req.headers.expect;
    }
    const headers = upstreamHeaderList(req.headers, options.preserveHost ? req.headers.host ?? server.url.host : server.url.host);
    const bodyless = !body && req.headers['transfer-encoding'] === undefined && Number(req.headers['content-length'] ?? 0) === 0;
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const path = collapseSlashes(req.url ?? '/');
    const method = req.method ?? 'GET';
    const send = (to: UpstreamServer) => {
      state.server = to;
      state.endAttempt = to.begin();
      state.abort = undefined;
      state.upstreamSocket = undefined;
      state.bytesBefore = undefined;
      state.reusedSocket = false;
      if (!options.preserveHost) setHost(headers, to.url.host);
      dispatchers.get(to)!.dispatch({ path, method, headers: headers as string[], body: body ?? (bodyless ? null : chunked ? chunksOf(req) as unknown as Readable : req) }, handlerFor(state, req, res, !body && !bodyless) as unknown as Dispatcher.DispatchHandler);
    };
    if (body || bodyless) state.resend = send;
    send(server);
  }

  function handlerFor(state: UndiciExchange, req: IncomingMessage, res: ServerResponse, streamed: boolean) {
    const { ctx } = state;
    let chunks: Buffer[] | undefined;
    let head: [status: number, statusText: string, headers: Record<string, string | string[]>] | undefined;
    let size = 0;
    let resume: (() => void) | undefined;
    const onDrain = () => resume?.();
    return {
      onConnect(abort: (err?: Error) => void) {
        state.abort = abort;
        if (state.tooLarge || res.destroyed) return abort();
        ctx.upstreamStartedAt = process.hrtime.bigint();
        state.lastActivity = tick;
        waiting.add(state);
        // The headers are written next, in this same call: the sendHeaders channel notes the socket.
        connecting = state;
        // Added now, in the call that makes undici read the body, so no chunk is read before either
        // listener; and before undici's own, so a chunk past the limit is never written upstream.
        if (streamed) {
          req.on('data', (chunk: Buffer) => {
            ctx.bytesIn += chunk.length;
            state.lastActivity = tick;
            if (maxBodySize > 0 && ctx.bytesIn > maxBodySize && !state.tooLarge) {
              state.tooLarge = true;
              abort();
            }
          });
        }
      },
      onHeaders(status: number, rawHeaders: Buffer[], resumeFn: () => void, statusText: string): boolean {
        // 1xx answers are the connection's business (undici reads past them), as Node's client does.
        if (status < 200) return true;
        if (state.answered || res.headersSent || res.destroyed) {
          state.abort?.();
          return false;
        }
        state.responded = true;
        resume = resumeFn;
        if (ctx.upstreamStartedAt) ctx.upstreamMs = Number(process.hrtime.bigint() - ctx.upstreamStartedAt) / 1e6;
        state.lastActivity = tick;
        const headers = undiciUtil.parseHeaders(rawHeaders) as Record<string, string | string[]>;
        if (state.transform && status >= 200 && status < 300) {
          const encoding = headers['content-encoding'];
          if (encoding !== undefined && encoding !== 'identity') {
            refuseTransform(state, `it is compressed (${String(encoding)})`);
            return false;
          }
          chunks = [];
          head = [status, statusText, headers];
          return true;
        }
        writeUpstreamHead(status, statusText, headers, res, rewriteLocation);
        res.on('drain', onDrain);
        return true;
      },
      onData(chunk: Buffer): boolean {
        state.lastActivity = tick;
        if (chunks) {
          size += chunk.length;
          if (size > MAX_TRANSFORMED_RESPONSE) {
            chunks = [];
            refuseTransform(state, `it is larger than ${MAX_TRANSFORMED_RESPONSE} bytes`);
            return false;
          }
          chunks.push(chunk);
          return true;
        }
        ctx.bytesOut += chunk.length;
        // Paused, undici puts what it has not parsed back into the socket and, resumed, copies all of
        // it into its parser's memory again: pausing at every full 16 KiB buffer made an answer sent
        // in small chunks (MLflow 2.17's artifact downloads: ~260 bytes each) ten times slower, each
        // resume re-copying the backlog, and the 2.17 client's 100 MB download failed. So the
        // client's buffer may hold PAUSE_ABOVE (4x its highWaterMark) before undici is paused.
        return res.write(chunk) || res.writableLength < PAUSE_ABOVE;
      },
      onComplete() {
        waiting.delete(state);
        res.off('drain', onDrain);
        if (!chunks) return void res.end();
        if (state.answered || res.destroyed) return;
        const [status, statusText, headers] = head!;
        state.transform!(Buffer.concat(chunks, size)).then((transformedBody) => {
          if (res.headersSent || res.destroyed) return;
          writeUpstreamHead(status, statusText, headers, res, rewriteLocation);
          res.setHeader('content-length', transformedBody.length);
          ctx.bytesOut += transformedBody.length;
          res.end(transformedBody);
        }, (err: Error) => {
          if (!res.headersSent) answerOnce(state, filterFailed(err.message));
        });
      },
      onError(err: Error) {
        waiting.delete(state);
        res.off('drain', onDrain);
        onWebError(state, req, res, err);
      },
    };
  }

  function refuseTransform(state: UndiciExchange, why: string): void {
    waiting.delete(state);
    state.abort?.();
    answerOnce(state, filterFailed(why));
  }

  function onWebError(state: UndiciExchange, req: IncomingMessage, res: ServerResponse, err: Error): void {
    state.endAttempt();
    const failure = err as NodeJS.ErrnoException;
    const code = failure.code && SOCKET_ERROR_CODES[failure.code];
    if (failure.code === 'ECONNREFUSED') state.server.refused(failure.code);
    if (state.tooLarge) return answerOnce(state, tooLargeError(maxBodySize));
    // Part of the answer went out: the client's connection is cut, as the upstream's was.
    if (res.headersSent) return void res.destroy();
    if (state.answered || res.destroyed || req.socket?.destroyed) return; // the client left; nothing to answer
    const problem = code ?? failure.code;
    // Queued on a kept-alive connection that broke before undici wrote this request to it.
    if (!state.abort && !CONNECT_ERRORS.has(failure.code)) state.reusedSocket = true;
    if (state.resend && !state.responded && neverSent(state, failure)) {
      const next = pool.choose((state.tried ??= new Set()).add(state.server));
      if (next) {
        options.logger?.info({ reqId: state.ctx.id, upstream: state.server.origin, retriedOn: next.origin, problem, reusedConnection: state.reusedSocket },
          `upstream request not sent to ${state.server.origin} (${problem}${problem === 'ECONNREFUSED' ? '' : ' on a reused connection, before any byte was written'}); retried on ${next.origin}`);
        return state.resend(next);
      }
    }
    const reported = code ? Object.assign(new Error(failure.message), { code }) : failure;
    answerOnce(state, upstreamFailure(reported, state.server.url, state.ctx.upstreamTimedOut, timeoutMs));
  }

  /**
   * Nothing of the request can have reached the server: its connection was refused, or a kept-alive
   * socket the server had closed failed before the gateway wrote a byte to it.
   */
  function neverSent(state: UndiciExchange, err: NodeJS.ErrnoException): boolean {
    if (state.ctx.upstreamTimedOut) return false;
    if (CONNECT_ERRORS.has(err.code)) return true;
    // undici fails every request still queued on a connection that breaks, before writing any.
    if (!state.abort) return true;
    const socket = state.upstreamSocket;
    return state.reusedSocket && socket !== undefined && state.bytesBefore !== undefined && socket.bytesWritten === state.bytesBefore;
  }

  return {
    pool,
    web,
    ws: tunnels.ws,
    close() {
      clearInterval(sweep);
      tunnels.close();
      for (const dispatcher of dispatchers.values()) void dispatcher.destroy().catch(() => {});
    },
  };
}

/** The exchange whose request undici is about to write (set in onConnect, taken by the channel below). */
let connecting: UndiciExchange | undefined;
const usedSockets = new WeakSet<Socket>();
// undici publishes the socket here just before it writes a request's first byte (synchronously after
// onConnect): what the retry rule needs, which its handler API does not give.
let subscribed = false;
function noteSockets(): void {
  if (subscribed) return;
  subscribed = true;
  diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);
}
function onSendHeaders(message: unknown): void {
  const state = connecting;
  connecting = undefined;
  if (!state) return;
  const { socket } = message as { socket: Socket };
  state.upstreamSocket = socket;
  state.bytesBefore = socket.bytesWritten;
  state.reusedSocket = usedSockets.has(socket);
  usedSockets.add(socket);
}

class TimeoutError extends Error {
  code = 'ETIMEDOUT';
  constructor() {
    super('upstream silent past proxy.timeout');
  }
}

/**
 * The headers as undici takes them: a flat name/value list without those it frames itself, the
 * Host first.
 */
function upstreamHeaderList(incoming: IncomingHttpHeaders, host: string): (string | string[])[] {
  const list: (string | string[])[] = ['host', host];
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || FRAMED_BY_UNDICI.has(name)) continue;
    list.push(name, value);
  }
  return list;
}

/**
 * A chunked body as undici sends it chunked again. Given the request stream itself, undici sends a
 * Content-Length instead whenever the whole body has already arrived; an iterable it cannot measure.
 */
// undici takes any (async) iterable as a body; its types list only streams.
async function* chunksOf(req: IncomingMessage): AsyncGenerator<Buffer> {
  for await (const chunk of req) yield chunk as Buffer;
}

function setHost(list: (string | string[])[], host: string): void {
  list[1] = host;
}

/** http-proxy joins the target's path and the request's and collapses repeated slashes in the path (not the query). */
function collapseSlashes(url: string): string {
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  if (!path.includes('//')) return url;
  return path.replace(/\/+/g, '/') + (query === -1 ? '' : url.slice(query));
}
