import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { parse as parseUrl } from 'node:url';
import httpProxy from 'http-proxy';
import { contextOf, type RequestContext, type UpstreamExchange } from '../context/request-context.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import type { Logger } from '../log/logger.ts';
import { upstreamFailure } from './upstream-errors.ts';
import type { UpstreamPool, UpstreamServer } from './upstream-pool.ts';

/** Response headers that describe the upstream connection, not the message; the gateway frames its own. */
const HOP_BY_HOP_RESPONSE: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * How long an idle upstream connection is kept: under uvicorn's default keep-alive of 5 s (what
 * `mlflow server` runs) even with the sweep's granularity, so the gateway drops a connection before
 * the upstream does and never sends a request down a socket the upstream is closing (a spurious 502).
 */
export const IDLE_UPSTREAM_SOCKET_MS = 2500;
const IDLE_SWEEP_MS = 1000;

export interface ForwarderOptions {
  /** The route's servers; the pipeline chooses one per request, the forwarder another only to retry. */
  pool: UpstreamPool;
  timeoutMs: number;
  maxBodySize: number;
  keepAliveSockets: number;
  /**
   * Send the client's Host rather than the upstream's: Jupyter compares Origin with Host; MLflow 3
   * refuses hosts it does not know, so its routes send the upstream's own.
   */
  preserveHost?: boolean;
  /** Rewrites each Location header of the upstream's answers (a stripped route's prefix put back). */
  rewriteLocation?: (location: string) => string;
  /** A WebSocket tunnel is open: the upstream's socket, for closing it cleanly later. */
  onTunnel?: (client: Duplex, upstream: Duplex) => void;
  /** Where a retry on another server is noted (info: the request, both servers and why). */
  logger?: Logger;
}

/** How one request is forwarded, when not simply streamed as it arrives. */
export interface ForwardOptions {
  /**
   * The whole body, already read from the client (and checked): exactly these bytes are sent,
   * with a Content-Length of their size, in place of the request stream.
   */
  body?: Buffer;
  /**
   * Rewrites a 2xx answer (search results without what the caller may not read): the answer is
   * read whole (up to 64 MiB), passed through, and sent with its new length. A rejection, or a
   * larger or compressed answer, gets a 502 instead: nothing unfiltered leaks.
   */
  transformResponse?: (body: Buffer) => Promise<Buffer>;
}

/** More than any page of search results; past it the answer is refused rather than held. */
export const MAX_TRANSFORMED_RESPONSE = 64 * 1024 * 1024;

export interface Forwarder {
  readonly pool: UpstreamPool;
  /** Forwards to `server`; retried on another of the pool's servers only while nothing of it can have been sent. */
  web(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, server: UpstreamServer, fail: (error: GatewayError) => void, options?: ForwardOptions): void;
  /** Opens the tunnel through `server`; never retried (the upgrade may have reached it). */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext, server: UpstreamServer, fail: (error: GatewayError) => void): void;
  close(): void;
}

/** The exchange as the forwarder tracks it across attempts (one per server tried). */
interface PooledExchange extends UpstreamExchange {
  server: UpstreamServer;
  /** The servers that failed it (made on the first retry). */
  tried?: Set<UpstreamServer>;
  /** Ends the current attempt's count of outstanding requests on its server. */
  endAttempt: () => void;
  /** Sends the request again, to another server; undefined when the gateway does not hold all of it (a streamed body). */
  resend?: (server: UpstreamServer) => void;
  /** The upstream socket's bytesWritten when this attempt got it: unchanged means nothing of the request left. */
  bytesBefore?: number;
  reusedSocket: boolean;
}

/** Connection errors after which nothing of the request reached the server, given it wrote no byte. */
const NOT_SENT_ERRORS: ReadonlySet<string | undefined> = new Set(['ECONNRESET', 'EPIPE']);

/** Streams requests to the upstream over kept-alive connections, in both directions, without buffering. */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { pool, timeoutMs, maxBodySize, rewriteLocation } = options;
  // The schema keeps one scheme per upstream, so one agent (it pools per host and port) serves all its servers.
  const Agent = pool.servers[0]!.url.protocol === 'https:' ? https.Agent : http.Agent;
  // No per-socket timers: re-arming them on every request costs more than the proxying itself.
  // One coarse sweep enforces both the upstream timeout and the idle-connection limit.
  const agent = new Agent({ keepAlive: true, maxFreeSockets: options.keepAliveSockets, scheduling: 'lifo' });
  // One http-proxy per server, its target parsed once here: given per request, http-proxy would copy
  // its options and re-parse the target every time.
  const targets = new Map(pool.servers.map((server) => [server, proxyTo(server.url)] as const));
  // Upgrades get their own connection each: a tunnel must never go back into the keep-alive pool.
  const wsOptions = { agent: false as const };

  function proxyTo(upstream: URL) {
    // The gateway writes responses itself (selfHandleResponse) to control their framing and cleanup.
    const proxy = httpProxy.createProxyServer({ target: parseUrl(upstream.origin), agent, changeOrigin: !options.preserveHost, xfwd: false, ws: true, selfHandleResponse: true });
    // http-proxy's deleteLength pass turns a chunked DELETE/OPTIONS body into "Content-Length: 0",
    // leaving the body on the upstream connection to be read as a second request (smuggling).
    const passes = (proxy as unknown as { webPasses: { name: string }[] }).webPasses;
    const deleteLength = passes.findIndex((pass) => pass.name === 'deleteLength');
    if (deleteLength === -1) throw new Error('http-proxy no longer has its deleteLength pass; check what replaced it before upgrading');
    passes.splice(deleteLength, 1);
    proxy.on('proxyReq', onProxyReq);
    proxy.on('proxyRes', onProxyRes);
    proxy.on('proxyReqWs', onProxyReqWs);
    return {
      proxy,
      // Called without per-request options, which http-proxy would copy (and re-parse the target from)
      // on every request; its types do not list this form.
      web: proxy.web.bind(proxy) as (req: IncomingMessage, res: ServerResponse, callback: (err: Error, req: IncomingMessage) => void) => void,
      // With a body read beforehand, http-proxy pipes `buffer` upstream instead of the request; all it
      // calls is buffer.pipe(upstreamRequest), so a one-write stand-in saves a stream per request.
      webBuffered: proxy.web.bind(proxy) as (req: IncomingMessage, res: ServerResponse, options: { buffer: { pipe(to: Writable): Writable } }, callback: (err: Error, req: IncomingMessage) => void) => void,
    };
  }

  const waiting = new Set<UpstreamExchange>();
  const sweepMs = silenceSweepMs(timeoutMs);
  let tick = 0;
  const freedAt = new WeakMap<Socket, number>();
  agent.on('free', (socket: Socket) => freedAt.set(socket, tick));
  const sweep = setInterval(() => {
    tick++;
    for (const state of waiting) {
      // One tick fewer than elapsed: activity may have come at the very end of its tick, and the
      // timeout is a promise of at least that much patience.
      if ((tick - state.lastActivity - 1) * sweepMs < timeoutMs) continue;
      state.ctx.upstreamTimedOut = true;
      waiting.delete(state);
      state.upstreamRequest?.destroy();
    }
    if ((tick * sweepMs) % IDLE_SWEEP_MS >= sweepMs) return;
    for (const sockets of Object.values(agent.freeSockets)) {
      for (const socket of sockets ?? []) {
        if ((tick - (freedAt.get(socket) ?? tick)) * sweepMs >= IDLE_UPSTREAM_SOCKET_MS) socket.destroy();
      }
    }
  }, sweepMs);
  sweep.unref();

  // http-proxy emits it once the upstream request has its socket, before it writes a byte there.
  function onProxyReq(proxyReq: http.ClientRequest, req: IncomingMessage): void {
    const state = contextOf(req)?.exchange as PooledExchange | undefined;
    if (!state) return;
    // The body may have passed the limit before the upstream connection was assigned.
    if (state.tooLarge) return void proxyReq.destroy();
    state.upstreamRequest = proxyReq;
    state.bytesBefore = proxyReq.socket?.bytesWritten;
    state.reusedSocket = proxyReq.reusedSocket;
    state.ctx.upstreamStartedAt = process.hrtime.bigint();
    state.lastActivity = tick;
    waiting.add(state);
  }

  function onProxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse): void {
    const state = contextOf(req)?.exchange;
    if (!state || state.answered || res.headersSent) return void proxyRes.destroy();
    const { ctx } = state;
    if (ctx.upstreamStartedAt) ctx.upstreamMs = Number(process.hrtime.bigint() - ctx.upstreamStartedAt) / 1e6;
    state.lastActivity = tick;
    const status = proxyRes.statusCode ?? 502;
    if (state.transform && status >= 200 && status < 300) return void transformed(state, proxyRes, res);
    writeResponseHead(proxyRes, res, rewriteLocation);
    proxyRes.on('data', (chunk: Buffer) => {
      ctx.bytesOut += chunk.length;
      state.lastActivity = tick;
    });
    // pipe alone would leave the other side open when one fails (stream.pipeline does this too,
    // at a third of the gateway's throughput): a client that leaves mid-download frees the
    // upstream connection, an upstream that dies mid-answer cuts the client off.
    proxyRes.pipe(res);
    proxyRes.once('end', () => waiting.delete(state));
    proxyRes.once('error', () => res.destroy());
    proxyRes.once('aborted', () => res.destroy());
    res.once('close', () => {
      if (!proxyRes.complete) proxyRes.destroy();
    });
  }

  /** A 2xx answer read whole, rewritten by state.transform, and sent with its own length. */
  function transformed(state: UpstreamExchange, proxyRes: IncomingMessage, res: ServerResponse): void {
    const refuse = (why: string) => {
      waiting.delete(state);
      proxyRes.destroy();
      answerOnce(state, filterFailed(why));
    };
    const encoding = proxyRes.headers['content-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return refuse(`it is compressed (${encoding})`);
    const chunks: Buffer[] = [];
    let size = 0;
    proxyRes.on('data', (chunk: Buffer) => {
      state.lastActivity = tick;
      size += chunk.length;
      if (size > MAX_TRANSFORMED_RESPONSE) return refuse(`it is larger than ${MAX_TRANSFORMED_RESPONSE} bytes`);
      chunks.push(chunk);
    });
    proxyRes.once('error', () => res.destroy());
    proxyRes.once('aborted', () => res.destroy());
    res.once('close', () => {
      if (!proxyRes.complete) proxyRes.destroy();
    });
    proxyRes.once('end', () => {
      waiting.delete(state);
      if (size > MAX_TRANSFORMED_RESPONSE || res.destroyed) return;
      state.transform!(Buffer.concat(chunks, size)).then((body) => {
        if (res.headersSent || res.destroyed) return;
        writeResponseHead(proxyRes, res, rewriteLocation);
        res.setHeader('content-length', body.length);
        state.ctx.bytesOut += body.length;
        res.end(body);
      }, (err: Error) => {
        if (!res.headersSent) answerOnce(state, filterFailed(err.message));
      });
    });
  }

  function onProxyReqWs(proxyReq: http.ClientRequest, req: IncomingMessage, socket: Duplex): void {
    const state = contextOf(req)?.exchange;
    proxyReq.setTimeout(timeoutMs, () => {
      if (state) state.ctx.upstreamTimedOut = true;
      proxyReq.destroy();
    });
    // http-proxy ends the upstream side only when the client side ends or errors cleanly; a client
    // socket destroyed outright (e.g. on shutdown) would leave the upstream tunnel open.
    const cutRequest = () => proxyReq.destroy();
    socket.once('close', cutRequest);
    // An answer other than the upgrade goes to the client as it is (http-proxy pipes it): logged with its status.
    proxyReq.once('response', (answer) => {
      if (state) state.ctx.upgradeStatus = answer.statusCode;
    });
    proxyReq.once('upgrade', (_res, proxySocket: Duplex) => {
      if (state) state.ctx.upgradeStatus = 101;
      socket.off('close', cutRequest);
      options.onTunnel?.(socket, proxySocket);
      socket.once('close', () => proxySocket.destroy());
    });
  }

  function onWebError(err: Error, req: IncomingMessage): void {
    const state = contextOf(req)?.exchange as PooledExchange | undefined;
    if (!state) return;
    state.endAttempt();
    const failure = err as NodeJS.ErrnoException;
    if (failure.code === 'ECONNREFUSED') state.server.refused(failure.code);
    if (state.tooLarge) return answerOnce(state, tooLargeError(maxBodySize));
    if (req.socket.destroyed) return; // the client left; nothing to answer
    if (state.resend && !state.answered && neverSent(failure, state)) {
      waiting.delete(state);
      const next = pool.choose((state.tried ??= new Set()).add(state.server));
      if (next) {
        options.logger?.info({ reqId: state.ctx.id, upstream: state.server.origin, retriedOn: next.origin, problem: failure.code, reusedConnection: state.reusedSocket },
          `upstream request not sent to ${state.server.origin} (${failure.code}${failure.code === 'ECONNREFUSED' ? '' : ' on a reused connection, before any byte was written'}); retried on ${next.origin}`);
        return state.resend(next);
      }
    }
    answerOnce(state, upstreamFailure(failure, state.server.url, state.ctx.upstreamTimedOut, timeoutMs));
  }

  /**
   * Nothing of the request can have reached the server: its connection was refused, or a kept-alive
   * socket the server had closed failed before the gateway wrote a byte to it.
   */
  function neverSent(err: NodeJS.ErrnoException, state: PooledExchange): boolean {
    if (state.ctx.upstreamTimedOut) return false;
    if (err.code === 'ECONNREFUSED') return true;
    const socket = state.upstreamRequest?.socket;
    return state.reusedSocket && NOT_SENT_ERRORS.has(err.code) && socket != null && state.bytesBefore !== undefined && socket.bytesWritten === state.bytesBefore;
  }

  function onWsError(err: Error, req: IncomingMessage): void {
    const state = contextOf(req)?.exchange as PooledExchange | undefined;
    if (!state) return;
    const failure = err as NodeJS.ErrnoException;
    if (failure.code === 'ECONNREFUSED') state.server.refused(failure.code);
    answerOnce(state, upstreamFailure(failure, state.server.url, state.ctx.upstreamTimedOut, timeoutMs));
  }

  return {
    pool,
    web(req, res, ctx, server, fail, forward) {
      const body = forward?.body;
      if (maxBodySize > 0 && (body ? body.length : Number(req.headers['content-length'] ?? 0)) > maxBodySize) {
        fail(tooLargeError(maxBodySize));
        return;
      }
      const state: PooledExchange = {
        ctx, lastActivity: tick, fail, tooLarge: false, answered: false, transform: forward?.transformResponse,
        server, endAttempt: () => {}, reusedSocket: false,
      };
      ctx.exchange = state;
      res.once('close', () => {
        waiting.delete(state);
        state.endAttempt();
      });
      // An answer to rewrite must arrive as it is: no compression the gateway would have to undo.
      if (state.transform) delete req.headers['accept-encoding'];
      const send = (to: UpstreamServer) => {
        state.server = to;
        state.endAttempt = to.begin();
        state.bytesBefore = undefined;
        state.reusedSocket = false;
        const target = targets.get(to)!;
        if (body) target.webBuffered(req, res, { buffer: { pipe: (upstreamRequest) => upstreamRequest.end(body) } }, onWebError);
        else target.web(req, res, onWebError);
      };
      if (body) {
        // The bytes that were checked, framed by their own length: nothing of the client's framing is kept.
        req.headers['content-length'] = String(body.length);
        delete req.headers['transfer-encoding'];
        delete req.headers.expect;
        // The gateway holds all of it: it can go to another server as it went to the first.
        state.resend = send;
        return send(server);
      }
      // No body at all: nothing is consumed from the client, so it can be sent again. A streamed
      // body cannot: what was read went to the first server.
      const bodyless = req.headers['transfer-encoding'] === undefined && Number(req.headers['content-length'] ?? 0) === 0;
      if (bodyless) state.resend = send;
      req.on('data', (chunk: Buffer) => {
        ctx.bytesIn += chunk.length;
        state.lastActivity = tick;
        if (maxBodySize > 0 && ctx.bytesIn > maxBodySize && !state.tooLarge) {
          state.tooLarge = true;
          state.upstreamRequest?.destroy();
        }
      });
      send(server);
    },
    ws(req, socket, head, ctx, server, fail) {
      const state: PooledExchange = { ctx, lastActivity: tick, fail, tooLarge: false, answered: false, server, endAttempt: server.begin(), reusedSocket: false };
      ctx.exchange = state;
      // A tunnel is load on its server for as long as it is open.
      socket.once('close', state.endAttempt);
      targets.get(server)!.proxy.ws(req, socket, head, wsOptions, onWsError);
    },
    close() {
      clearInterval(sweep);
      for (const target of targets.values()) target.proxy.close();
      agent.destroy();
    },
  };
}

/** Status and end-to-end headers of the upstream's response; Node frames the body for this client. */
function writeResponseHead(proxyRes: IncomingMessage, res: ServerResponse, rewriteLocation?: (location: string) => string): void {
  writeUpstreamHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, proxyRes.headers, res, rewriteLocation);
}

/** The same for any forwarder: the upstream's status, message and parsed (lower-cased) headers. */
export function writeUpstreamHead(status: number, statusMessage: string | undefined, headers: Record<string, string | string[] | undefined>, res: ServerResponse, rewriteLocation?: (location: string) => string): void {
  const connection = headers.connection;
  const named = typeof connection === 'string' && connection !== 'keep-alive' && connection !== 'close' ? connection.toLowerCase().split(',').map((token) => token.trim()) : undefined;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP_RESPONSE.has(name) || named?.includes(name)) continue;
    // The gateway may have set its own cookie (a renewed session): keep both.
    if (name === 'set-cookie' && res.hasHeader(name)) res.appendHeader(name, value);
    else if (name === 'location' && rewriteLocation && typeof value === 'string') res.setHeader(name, rewriteLocation(value));
    else res.setHeader(name, value);
  }
  res.statusCode = status;
  if (statusMessage) res.statusMessage = statusMessage;
}

/** How often a forwarder checks its exchanges for silence past proxy.timeout: a quarter of it, 25 ms to 1 s. */
export function silenceSweepMs(timeoutMs: number): number {
  return Math.max(25, Math.min(IDLE_SWEEP_MS, Math.floor(timeoutMs / 4)));
}

/** An exchange gets one answer: the first failure reported is the one the client sees. */
export function answerOnce(state: UpstreamExchange, error: GatewayError): void {
  if (state.answered) return;
  state.answered = true;
  state.fail(error);
}

/** An answer the gateway had to read whole and filter (a search) could not be. */
export function filterFailed(why: string): GatewayError {
  return { status: 502, code: 'TEMPORARILY_UNAVAILABLE', message: `mlgate could not filter MLflow's answer: ${why}` };
}

export function tooLargeError(limit: number): GatewayError {
  return {
    status: 413,
    code: 'RESOURCE_EXHAUSTED',
    message: `request body larger than the gateway's limit of ${limit} bytes (proxy.maxBodySize)`,
    headers: { connection: 'close' },
  };
}
