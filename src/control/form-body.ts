// Reading the small bodies the gateway's own routes accept (the sign-in and sign-out forms, the
// permissions page's form and API), with a size limit that holds whether the body comes with a
// Content-Length or chunked. Hono's bodyLimit middleware is not used: on a body without
// Content-Length it rebuilds the request with the global Request class, which fails on
// @hono/node-server's own request object (overrideGlobalObjects: false) and answered 500.
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';

type Env = { Bindings: HttpBindings };

/**
 * The request body, or undefined when it is larger than `limit` bytes: refused at once when the
 * Content-Length says so, else as soon as more than `limit` bytes have arrived (the rest is not
 * read; @hono/node-server drains or closes the connection after the answer).
 */
export async function readBodyLimited(c: Context<Env>, limit: number): Promise<Buffer | undefined> {
  const length = c.req.header('content-length');
  if (length !== undefined && Number(length) > limit) return undefined;
  const stream = c.req.raw.body;
  if (!stream) return Buffer.alloc(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

export type FormFields = ReadonlyMap<string, string>;

/**
 * An HTML form's text fields (application/x-www-form-urlencoded or multipart/form-data), the first
 * value of each name; `tooLarge` past `limit` bytes. Any other Content-Type, or a multipart body
 * that does not parse, gives no fields (as Hono's parseBody gives none).
 */
export async function readForm(c: Context<Env>, limit: number): Promise<{ tooLarge: true } | { tooLarge: false; fields: FormFields }> {
  const body = await readBodyLimited(c, limit);
  if (body === undefined) return { tooLarge: true };
  const type = c.req.header('content-type') ?? '';
  const fields = new Map<string, string>();
  const add = (name: string, value: unknown) => {
    if (typeof value === 'string' && !fields.has(name)) fields.set(name, value);
  };
  if (/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    for (const [name, value] of new URLSearchParams(body.toString('utf8'))) add(name, value);
  } else if (/^multipart\/form-data\s*;/i.test(type)) {
    try {
      const form = await new Response(new Uint8Array(body), { headers: { 'content-type': type } }).formData();
      for (const [name, value] of form) add(name, value);
    } catch {
      // not a multipart body after all: no fields
    }
  }
  return { tooLarge: false, fields };
}
