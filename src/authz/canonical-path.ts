// The one reading of a request target that both the gateway's checks and MLflow agree on.
//
// MLflow (werkzeug, or uvicorn in 3.x) percent-decodes the path once and routes on the result; its
// artifact handlers then decode again, up to ten times, before touching a file. http-proxy 1.18, on
// the way there, runs the target through url.parse (which turns `\` into `/`, drops `#...`, and
// once the path holds an `@` percent-encodes ' " < > \ ^ ` { | } in the whole target) and urlJoin (which collapses
// `//` and rewrites `http:/` to `http://`). Rather than normalise and hope every hop normalises the
// same way, a target any of those would read differently is refused with 400. What is left goes
// upstream byte-for-byte as the client sent it (forward req.url unchanged), and MLflow decodes it
// to exactly `path`:
//   refused: not starting with `/`; bytes outside printable ASCII; `#`; `\` in the path; `@` in
//            the path together with any of ' " < > \ ^ ` { | }; `%` not followed by two hex digits; escapes
//            that are not UTF-8 (overlong forms such as %C0%AE, surrogates, truncated sequences);
//            %2F, %5C, %23 (an encoded slash, backslash or hash); control characters, raw or
//            encoded; an escape left after one decoding (%252E: MLflow's artifact code would decode
//            it again); empty segments (`//`); `.` and `..` segments, raw or encoded; `http:/` or
//            `https:/` anywhere in the path.
//   kept as is: everything else, including a trailing slash (MLflow answers 404 for it, and so
//            does the route table), `;` (no hop gives it a meaning) and `%20`/`%25` in artifact
//            names. The query string is MLflow's to parse: only the ASCII, `#` and `@` rules touch it.

export type ApiPrefix = 'api' | 'ajax-api';
export type ApiVersion = '2.0' | '3.0';

export interface CanonicalTarget {
  ok: true;
  /** The path decoded once, as MLflow routes it; what `matchRule` takes. */
  path: string;
  /** The query string as sent, without the `?` ('' for none); parse it with URLSearchParams, as werkzeug would. */
  query: string;
  /** Set for `/api/...` and `/ajax-api/...` paths: the ones MLflow's clients parse as JSON. */
  prefix: ApiPrefix | undefined;
  /** Set when the segment after the prefix is `2.0` or `3.0`, the only versions MLflow serves. */
  version: ApiVersion | undefined;
  /** `path` after `/<prefix>/<version>` (e.g. `/mlflow/runs/get`), or all of `path` when that is not there. */
  mlflowPath: string;
}

interface RefusedTarget {
  ok: false;
  status: 400;
  reason: string;
}

const RAW_REFUSED = /[^\x21-\x7e]|#/;
/** What url.parse percent-encodes once the path holds an `@` (it then leaves its fast path). */
const REENCODED_AFTER_AT = /['"<>\\^`{|}]/;
const MALFORMED_ESCAPE = /%(?![0-9A-Fa-f]{2})/;
const AMBIGUOUS_ESCAPE = /%(2f|5c|23)/i;
const LEFT_AFTER_DECODING = /%[0-9A-Fa-f]{2}/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const DOT_SEGMENT = /\/\.{1,2}(?:\/|$)/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function refuse(reason: string): RefusedTarget {
  return { ok: false, status: 400, reason };
}

export function canonicalizeTarget(target: string): CanonicalTarget | RefusedTarget {
  if (!target.startsWith('/')) return refuse('the request target must be a path starting with "/"');
  const mark = target.indexOf('?');
  const raw = mark === -1 ? target : target.slice(0, mark);
  const query = mark === -1 ? '' : target.slice(mark + 1);
  if (RAW_REFUSED.test(target)) return refuse('the request target may only hold printable ASCII, without "#"; percent-encode anything else');
  if (raw.includes('\\')) return refuse('the path contains a backslash');
  if (raw.includes('@') && REENCODED_AFTER_AT.test(target)) return refuse('with "@" in the path, the target may not hold \' " < > \\ ^ ` { | } unencoded: the proxy would re-encode them');
  if (raw.includes('//')) return refuse('the path has an empty segment ("//")');
  if (raw.includes('http:/') || raw.includes('https:/')) return refuse('the path contains "http:/" or "https:/", which the proxy would rewrite');

  let path = raw;
  if (raw.includes('%')) {
    if (MALFORMED_ESCAPE.test(raw)) return refuse('the path has a "%" that is not followed by two hex digits');
    if (AMBIGUOUS_ESCAPE.test(raw)) return refuse('the path has an encoded "/", "\\" or "#" (%2F, %5C, %23)');
    const decoded = decodeUtf8Escapes(raw);
    if (decoded === undefined) return refuse('the path has percent-escapes that are not valid UTF-8 (overlong, surrogate or truncated sequences)');
    if (LEFT_AFTER_DECODING.test(decoded)) return refuse('the path is percent-encoded twice (an escape remains after decoding)');
    path = decoded;
  }
  if (CONTROL.test(path)) return refuse('the path has an encoded control character');
  if (DOT_SEGMENT.test(path)) return refuse('the path has a "." or ".." segment');
  return { ok: true, path, query, ...apiPartsOf(path) };
}

function decodeUtf8Escapes(raw: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '%') {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(raw.charCodeAt(i));
  }
  try {
    return UTF8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

function apiPartsOf(path: string): Pick<CanonicalTarget, 'prefix' | 'version' | 'mlflowPath'> {
  const first = path.indexOf('/', 1);
  const head = first === -1 ? path.slice(1) : path.slice(1, first);
  if (head !== 'api' && head !== 'ajax-api') return { prefix: undefined, version: undefined, mlflowPath: path };
  const second = first === -1 ? -1 : path.indexOf('/', first + 1);
  const version = first === -1 ? '' : second === -1 ? path.slice(first + 1) : path.slice(first + 1, second);
  if (version !== '2.0' && version !== '3.0') return { prefix: head, version: undefined, mlflowPath: path };
  return { prefix: head, version, mlflowPath: second === -1 ? '/' : path.slice(second) };
}
