import type { IncomingMessage } from 'node:http';
import type { RequestContext } from '../context/request-context.ts';

export type BodyRead =
  | { ok: true; body: Buffer }
  | { ok: false; tooLarge: true }
  /** The client left (or the connection failed) before the body ended. */
  | { ok: false; tooLarge: false };

/**
 * Reads a request body whole, up to `limit` bytes, for the gateway to check and then forward those
 * very bytes. A declared Content-Length over the limit is refused before anything is read.
 */
export function readRequestBody(req: IncomingMessage, ctx: RequestContext, limit: number): Promise<BodyRead> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.resolve({ ok: false, tooLarge: true });
  if (req.readableEnded) return Promise.resolve({ ok: true, body: Buffer.alloc(0) });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyRead) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('aborted', onFail);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      ctx.bytesIn += chunk.length;
      size += chunk.length;
      if (size > limit) {
        req.pause();
        return done({ ok: false, tooLarge: true });
      }
      chunks.push(chunk);
    };
    const onEnd = () => done({ ok: true, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    const onFail = () => done({ ok: false, tooLarge: false });
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onFail);
    req.once('aborted', onFail);
  });
}
