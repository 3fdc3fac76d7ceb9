import type { IncomingMessage } from 'node:http';
import type { RequestContext } from '../context/request-context.ts';

type BodyRead =
  | { ok: true; body: Buffer }
  | { ok: false; tooLarge: true }
  /**
   * The client left (or the connection failed) before the body ended; or, with `busy`, the memory
   * budget for checked bodies is spent (the request is to be answered 503 with Retry-After).
   */
  | { ok: false; tooLarge: false; busy?: true };

/**
 * The memory for bodies read whole to check them, shared by every request (limits.checkedBodyBudget):
 * a body reserves its declared length before it is read (or each chunk as it comes, when chunked),
 * and gives it back when its request is over, or when it fails (a body that stalls loses its
 * connection to the slow-request watch, and its memory here with it).
 */
export class BodyBudget {
  private used = 0;
  constructor(readonly total: number) {}
  get inUse(): number {
    return this.used;
  }
  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.total) return false;
    this.used += bytes;
    return true;
  }
  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/**
 * Reads a request body whole, up to `limit` bytes, for the gateway to check and then forward those
 * very bytes. A declared Content-Length over the limit is refused before anything is read.
 */
export function readRequestBody(req: IncomingMessage, ctx: RequestContext, limit: number, budget: BodyBudget): Promise<BodyRead> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.resolve({ ok: false, tooLarge: true });
  if (req.readableEnded) return Promise.resolve({ ok: true, body: Buffer.alloc(0) });
  let reserved = 0;
  const reserve = (bytes: number) => {
    if (bytes <= reserved) return true;
    if (!budget.tryReserve(bytes - reserved)) return false;
    reserved = bytes;
    return true;
  };
  const giveBack = () => {
    budget.release(reserved);
    reserved = 0;
  };
  const busy = (): BodyRead => {
    giveBack();
    return { ok: false, tooLarge: false, busy: true };
  };
  if (declared !== undefined && !reserve(Number(declared) || 0)) return Promise.resolve(busy());
  // Held until the exchange is over (the body is forwarded after the check).
  ctx.atEnd.push(giveBack);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyRead) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('aborted', onFail);
      req.off('close', onFail);
      if (!result.ok) giveBack();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      ctx.bytesIn += chunk.length;
      size += chunk.length;
      if (size > limit) {
        req.pause();
        return done({ ok: false, tooLarge: true });
      }
      if (!reserve(size)) {
        req.pause();
        return done(busy());
      }
      chunks.push(chunk);
    };
    const onEnd = () => done({ ok: true, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    const onFail = () => done({ ok: false, tooLarge: false });
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onFail);
    req.once('aborted', onFail);
    // A connection destroyed mid-body (the slow-request watch) may end the stream with only 'close'.
    req.once('close', onFail);
  });
}
