// Calls the gateway over plain HTTP with the request target sent exactly as written (no URL
// parsing, which would normalise "..", "%2e" and the like), as a given user.
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { basic } from './http-client.ts';

export interface ApiResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

interface CallOptions {
  /** An object is sent as JSON (with Content-Type application/json unless headers say otherwise); a string or Buffer as is. */
  body?: unknown;
  headers?: OutgoingHttpHeaders;
  /** Send the body in chunks (Transfer-Encoding: chunked) instead of with a Content-Length. */
  chunked?: boolean;
}

export function apiCaller(port: number, passwords: Readonly<Record<string, string>>) {
  return function call(user: string, method: string, target: string, options: CallOptions = {}): Promise<ApiResponse> {
    const headers: OutgoingHttpHeaders = { authorization: basic(user, passwords[user] ?? `${user}-password`), ...options.headers };
    let body: Buffer | undefined;
    if (options.body !== undefined) {
      if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) body = Buffer.from(options.body);
      else {
        body = Buffer.from(JSON.stringify(options.body));
        if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
      }
    }
    if (body && !options.chunked) headers['content-length'] = body.length;
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
        });
      });
      req.on('error', reject);
      if (body && options.chunked) {
        // Two chunks: the gateway must put them back together before checking.
        const half = Math.floor(body.length / 2);
        req.write(body.subarray(0, half));
        setTimeout(() => req.end(body!.subarray(half)), 5);
      } else req.end(body);
    });
  };
}
