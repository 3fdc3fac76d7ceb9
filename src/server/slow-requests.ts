// Request bodies that stop arriving, and bodies still arriving after the answer was sent.
//
// - A body that sends nothing for limits.bodyIdleTimeout (limits.unauthenticatedBodyIdleTimeout
//   while the sender is not signed in: the sign-in form, a request about to be refused) loses its
//   connection, and whatever memory was held for it. It is an idle time between bytes: an upload
//   that keeps moving, however long, is never cut; nor is one the gateway itself is not reading
//   (MLflow slow to take it, or the request still being authenticated).
// - A request answered before its body ended (a 401/403/413 on an upload) gets its answer; the rest
//   of the body is read and thrown away, up to limits.refusalDrainSize bytes within
//   limits.refusalDrainTime, and then the connection is closed. Closing with unread bytes would make
//   the kernel send a reset that can destroy the answer before the client reads it (Python requests
//   then reports a broken pipe or an SSL EOF instead of the JSON error).
//
// One sweep over the watched requests enforces it all: no per-request timers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';

/** Connections closed per turn of the event loop when many time out at once. */
const CLOSE_PER_TURN = 16;

interface SlowRequestLimits {
  bodyIdleTimeout: number;
  unauthenticatedBodyIdleTimeout: number;
  refusalDrainSize: number;
  refusalDrainTime: number;
}

interface Watched {
  req: IncomingMessage;
  socket: Socket;
  ctx: RequestContext;
  bytesRead: number;
  lastActivity: number;
  /** When the gateway began reading the body of a sender not signed in (the sign-in form). */
  anonymousReadingSince?: number;
  /** Set once the answer is sent while the body is still coming. */
  drain?: { fromBytes: number; until: number };
  /** The answer meant to close the connection (Connection: close, held back until the body is in). */
  closeAfterBody?: boolean;
}

export interface SlowRequestWatch {
  /** Watches a request's body, if it has one still to come. */
  watch(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): void;
  /** Whether the request's body has not all arrived yet (an answer now leaves bytes on the wire). */
  bodyPending(req: IncomingMessage): boolean;
  /**
   * The answer to this request wanted Connection: close, which an answer sent before the body is in
   * cannot carry (Node would close with unread bytes: a reset): close once the rest has arrived.
   */
  closeAfterBody(req: IncomingMessage): void;
  close(): void;
}

export function createSlowRequestWatch(limits: SlowRequestLimits, logger: Logger): SlowRequestWatch {
  const watched = new Set<Watched>();
  const shortest = Math.min(limits.bodyIdleTimeout, limits.unauthenticatedBodyIdleTimeout, limits.refusalDrainTime);
  const sweepMs = Math.max(25, Math.min(1000, Math.floor(shortest / 4)));

  // Connections to close, a batch per turn of the event loop: slow clients that started together time
  // out together, and closing hundreds at once (the sign-in form's web streams unwinding with each)
  // would stall everyone else's requests for a moment.
  const closing: Socket[] = [];
  const closeSome = () => {
    for (const socket of closing.splice(0, CLOSE_PER_TURN)) socket.destroy();
    if (closing.length > 0) setImmediate(closeSome);
  };
  const close = (socket: Socket) => {
    if (closing.push(socket) === 1) setImmediate(closeSome);
  };

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const entry of watched) {
      const { req, socket, ctx } = entry;
      if (socket.destroyed || req.complete) {
        watched.delete(entry);
        continue;
      }
      const bytesRead = socket.bytesRead;
      if (entry.drain) {
        if (bytesRead - entry.drain.fromBytes <= limits.refusalDrainSize && now < entry.drain.until) continue;
        logger.debug({ reqId: ctx.id, ip: ctx.clientIp }, 'closing the connection: the refused request\'s body went on past limits.refusalDrainSize or refusalDrainTime');
        watched.delete(entry);
        close(socket);
        continue;
      }
      // Nobody signed in uploads anything large: a body from a sender not signed in (a sign-in form)
      // must arrive whole within unauthenticatedBodyIdleTimeout of being read, however it trickles.
      if (!ctx.principal && req.readableFlowing === true) entry.anonymousReadingSince ??= now;
      const anonymousTooLong = !ctx.principal && entry.anonymousReadingSince !== undefined && now - entry.anonymousReadingSince >= limits.unauthenticatedBodyIdleTimeout;
      const limit = ctx.principal ? limits.bodyIdleTimeout : limits.unauthenticatedBodyIdleTimeout;
      // Bytes arrived, or the gateway is the one not reading (authentication under way, or MLflow
      // not taking the body as fast as it comes): not the client's silence.
      if (bytesRead !== entry.bytesRead || req.readableFlowing !== true || req.readableLength > 0) {
        entry.bytesRead = bytesRead;
        entry.lastActivity = now;
      }
      if (now - entry.lastActivity < limit && !anonymousTooLong) continue;
      const why = anonymousTooLong ? `body from a client not signed in still arriving after ${limit} ms` : `request body idle for ${limit} ms`;
      // Debug: under a flood of slow clients, one line per connection would be a flood of its own (the
      // access log has the request).
      logger.debug({ reqId: ctx.id, ip: ctx.clientIp, user: ctx.principal?.user, bytesIn: ctx.bytesIn }, `${why}; connection closed (limits.${ctx.principal ? 'bodyIdleTimeout' : 'unauthenticatedBodyIdleTimeout'})`);
      watched.delete(entry);
      close(socket);
    }
  }, sweepMs);
  sweep.unref();

  function startDrain(entry: Watched): void {
    const { req, socket } = entry;
    entry.drain = { fromBytes: socket.bytesRead, until: performance.now() + limits.refusalDrainTime };
    // A reader that stopped (a body refused as too large) would leave the rest on the wire.
    req.resume();
    req.once('end', () => {
      watched.delete(entry);
      // The whole body is read: closing now cannot reset the answer away. An answer that kept the
      // connection (a 401 or 403 before a late body) keeps it: the client may send its next request
      // on it, and closing would fail that one.
      if (entry.closeAfterBody && !socket.destroyed) socket.end();
    });
  }

  return {
    watch(req, res, ctx) {
      if (req.complete || !hasBody(req)) return;
      const entry: Watched = { req, socket: req.socket as Socket, ctx, bytesRead: req.socket.bytesRead, lastActivity: performance.now() };
      watched.add(entry);
      res.once('finish', () => {
        if (req.complete || entry.socket.destroyed) watched.delete(entry);
        else startDrain(entry);
      });
      res.once('close', () => {
        if (!entry.drain) watched.delete(entry);
      });
    },
    bodyPending: (req) => !req.complete && hasBody(req),
    closeAfterBody(req) {
      for (const entry of watched) if (entry.req === req) entry.closeAfterBody = true;
    },
    close() {
      clearInterval(sweep);
    },
  };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
