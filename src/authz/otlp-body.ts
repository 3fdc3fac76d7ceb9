// A compressed request body, decompressed as the upstream will (MLflow 3's OTLP route takes
// Content-Encoding gzip or deflate, and decompresses without a limit), streaming and bounded: the
// gateway stops at `limit` decompressed bytes and the request gets a 413.
import { createGunzip, createInflate, createInflateRaw, type Gunzip, type Inflate, type InflateRaw } from 'node:zlib';

type Decoded =
  | { ok: true; body: Buffer }
  | { ok: false; status: 400 | 413; message: string };

type Decompressor = Gunzip | Inflate | InflateRaw;

/** Decompresses `raw` chunk by chunk; undefined if it is not valid, 'too-large' past `limit` bytes. */
function inflateBounded(raw: Buffer, make: () => Decompressor, limit: number): Promise<Buffer | undefined | 'too-large'> {
  return new Promise((resolve) => {
    const stream = make();
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: Buffer | undefined | 'too-large') => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        settle('too-large');
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    });
    stream.on('error', () => settle(undefined));
    stream.on('end', () => settle(Buffer.concat(chunks, size)));
    stream.end(raw);
  });
}

/**
 * The body as MLflow's OTLP route reads it (mlflow.tracing.utils.otlp.decompress_otlp_body):
 * no Content-Encoding is the body itself; `gzip` (all members); `deflate` is zlib format, or raw
 * deflate when that fails. Anything else MLflow refuses (400), and so does the gateway.
 */
export async function decodeBody(raw: Buffer, contentEncoding: string | undefined, limit: number): Promise<Decoded> {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding === '') return { ok: true, body: raw };
  const tooLarge = { ok: false, status: 413, message: `the request body decompresses to more than ${limit} bytes, the most mlgate reads (authz.maxDecompressedBody)` } as const;
  if (encoding === 'gzip') {
    const body = await inflateBounded(raw, createGunzip, limit);
    if (body === 'too-large') return tooLarge;
    return body ? { ok: true, body } : { ok: false, status: 400, message: 'Failed to decompress gzip payload' };
  }
  if (encoding === 'deflate') {
    // zlib ignores data after the end of the stream in both Python and Node: one outcome either way.
    let body = await inflateBounded(raw, createInflate, limit);
    if (body === undefined) body = await inflateBounded(raw, createInflateRaw, limit);
    if (body === 'too-large') return tooLarge;
    return body ? { ok: true, body } : { ok: false, status: 400, message: 'Failed to decompress deflate payload' };
  }
  return { ok: false, status: 400, message: `Unsupported Content-Encoding: ${JSON.stringify(encoding.slice(0, 50))}; MLflow takes gzip or deflate` };
}
