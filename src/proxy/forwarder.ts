import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { RequestContext } from '../context/request-context.ts';
import type { GatewayError } from '../http/errors.ts';
import { upstreamFailure } from './upstream-errors.ts';

/** Response headers that describe the upstream connection, not the message. */
const HOP_BY_HOP_RESPONSE = ['keep-alive', 'proxy-connection', 'proxy-authenticate', 'trailer', 'upgrade'];

export interface ForwarderOptions {
  upstream: URL;
  timeoutMs: number;
  maxBodySize: number;
  keepAliveSockets: number;
}

export interface Forwarder {
  web(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, fail: (error: GatewayError) => void): void;
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext, fail: (error: GatewayError) => void): void;
  close(): void;
}

interface InFlight {
  ctx: RequestContext;
  upstreamRequest?: ClientRequest;
  tooLarge: boolean;
}

/** Streams requests to the upstream over kept-alive connections, in both directions, without buffering. */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { upstream, timeoutMs, maxBodySize } = options;
  const Agent = upstream.protocol === 'https:' ? https.Agent : http.Agent;
  const agent = new Agent({ keepAlive: true, maxFreeSockets: options.keepAliveSockets, scheduling: 'lifo' });
  const proxy = httpProxy.createProxyServer({ target: upstream.origin, agent, changeOrigin: true, xfwd: false, ws: true });
  // http-proxy's deleteLength pass turns a chunked DELETE/OPTIONS body into "Content-Length: 0",
  // leaving the body on the upstream connection to be read as a second request (smuggling).
  const passes = (proxy as unknown as { webPasses: { name: string }[] }).webPasses;
  passes.splice(passes.findIndex((pass) => pass.name === 'deleteLength'), 1);

  const inflight = new WeakMap<IncomingMessage, InFlight>();

  proxy.on('proxyReq', (proxyReq, req) => {
    const state = inflight.get(req);
    if (!state) return;
    state.upstreamRequest = proxyReq;
    state.ctx.upstreamStartedAt = process.hrtime.bigint();
    proxyReq.setTimeout(timeoutMs, () => {
      state.ctx.upstreamTimedOut = true;
      proxyReq.destroy();
    });
  });

  proxy.on('proxyRes', (proxyRes, req) => {
    const state = inflight.get(req);
    if (state?.ctx.upstreamStartedAt) state.ctx.upstreamMs = Number(process.hrtime.bigint() - state.ctx.upstreamStartedAt) / 1e6;
    for (const name of HOP_BY_HOP_RESPONSE) delete proxyRes.headers[name];
    if (state) proxyRes.on('data', (chunk: Buffer) => { state.ctx.bytesOut += chunk.length; });
  });

  return {
    web(req, res, ctx, fail) {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (maxBodySize > 0 && declared > maxBodySize) {
        fail(tooLargeError(maxBodySize));
        return;
      }
      const state: InFlight = { ctx, tooLarge: false };
      inflight.set(req, state);
      req.on('data', (chunk: Buffer) => {
        ctx.bytesIn += chunk.length;
        if (maxBodySize > 0 && ctx.bytesIn > maxBodySize && !state.tooLarge) {
          state.tooLarge = true;
          state.upstreamRequest?.destroy();
        }
      });
      proxy.web(req, res, {}, (err) => {
        if (state.tooLarge) return fail(tooLargeError(maxBodySize));
        if (req.socket.destroyed) return; // the client left; nothing to answer
        fail(upstreamFailure(err as NodeJS.ErrnoException, upstream, ctx.upstreamTimedOut, timeoutMs));
      });
    },
    ws(req, socket, head, ctx, fail) {
      inflight.set(req, { ctx, tooLarge: false });
      proxy.ws(req, socket, head, { agent: false }, (err) => {
        fail(upstreamFailure(err as NodeJS.ErrnoException, upstream, ctx.upstreamTimedOut, timeoutMs));
      });
    },
    close() {
      proxy.close();
      agent.destroy();
    },
  };
}

function tooLargeError(limit: number): GatewayError {
  return {
    status: 413,
    code: 'RESOURCE_EXHAUSTED',
    message: `request body larger than the gateway's limit of ${limit} bytes (proxy.maxBodySize)`,
    headers: { connection: 'close' },
  };
}
