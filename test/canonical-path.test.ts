// Every encoding trick a client can play on the path, and the proof that what is accepted reaches
// MLflow unchanged through http-proxy 1.18 (its own url.parse + urlJoin, run on each target).
import { createRequire } from 'node:module';
import { parse as parseUrl } from 'node:url';
import { describe, expect, it } from 'vitest';
import { canonicalizeTarget } from '../src/authz/canonical-path.ts';
import { matchRule } from '../src/authz/route-table.ts';

const httpProxyCommon = createRequire(import.meta.url)('http-proxy/lib/http-proxy/common.js') as { urlJoin(...parts: string[]): string };

/** The outgoing path http-proxy builds for a target of "/" (src/proxy/forwarder.ts). */
function forwardedByHttpProxy(target: string): string {
  return httpProxyCommon.urlJoin('/', parseUrl(target).path ?? '');
}

const ART = '/api/2.0/mlflow-artifacts/artifacts';
const RUN = '0123456789abcdef0123456789abcdef';

describe('refused with 400', () => {
  const refused: [string, string][] = [
    ['no leading slash', 'api/2.0/mlflow/runs/get'],
    ['absolute-form target', 'http://mlflow.example/api/2.0/mlflow/runs/get'],
    ['asterisk-form target', '*'],
    ['encoded slash (MLflow decodes it: reference §11)', `${ART}/1%2Fx/y.txt`],
    ['encoded slash, lower case', `${ART}/1/${RUN}/artifacts%2f..%2f..%2f2/x`],
    ['encoded dot-dot', `${ART}/1/${RUN}/artifacts/%2E%2E/%2E%2E/2/x`],
    ['encoded dot-dot, lower case', `${ART}/1/${RUN}/artifacts/%2e%2e/x`],
    ['encoded dot-dot, mixed case', `${ART}/1/${RUN}/artifacts/%2e%2E/x`],
    ['half-encoded dot-dot', `${ART}/1/${RUN}/artifacts/.%2e/x`],
    ['dot-dot inside an artifact path', `${ART}/1/${RUN}/artifacts/../../2/x`],
    ['dot-dot out of the API into the artifact proxy', '/api/2.0/mlflow/../mlflow-artifacts/artifacts/1/x'],
    ['dot-dot at the end', `${ART}/1/${RUN}/..`],
    ['dot segment', '/api/2.0/./mlflow/runs/get'],
    ['encoded dot segment', '/api/2.0/%2E/mlflow/runs/get'],
    ['dot segment at the end', `${ART}/1/${RUN}/artifacts/.`],
    ['double slash (2.17 redirects it, http-proxy collapses it)', '/api/2.0//mlflow/experiments/get'],
    ['leading double slash', '//api/2.0/mlflow/experiments/get'],
    ['double slash in an artifact path', `${ART}/1//${RUN}/artifacts/x`],
    ['trailing double slash', '/api/2.0/mlflow/runs/get//'],
    ['raw backslash (url.parse turns it into "/")', `${ART}/1/${RUN}/artifacts\\..\\..\\2\\x`],
    ['encoded backslash', `${ART}/1/${RUN}/artifacts/..%5C..%5C2/x`],
    ['encoded backslash, lower case', `${ART}/1/${RUN}/artifacts/a%5cb`],
    ['raw hash (url.parse drops the rest)', '/api/2.0/mlflow/runs/get#x?run_id=1'],
    ['encoded hash (MLflow refuses "#" in artifact paths)', `${ART}/1/${RUN}/artifacts/a%23b`],
    ['encoded NUL', `${ART}/1/${RUN}/artifacts/x.txt%00.png`],
    ['raw NUL', `${ART}/1/${RUN}/artifacts/x\u0000`],
    ['encoded newline', `${ART}/1/${RUN}/artifacts/a%0Ab`],
    ['encoded carriage return', `${ART}/1/${RUN}/artifacts/a%0db`],
    ['encoded tab', `${ART}/1/${RUN}/artifacts/a%09b`],
    ['encoded DEL', `${ART}/1/${RUN}/artifacts/a%7Fb`],
    ['encoded C1 control (NEL)', `${ART}/1/${RUN}/artifacts/a%C2%85b`],
    ['raw space', `${ART}/1/${RUN}/artifacts/a b`],
    ['raw non-ASCII', `${ART}/1/${RUN}/artifacts/caf\u00e9.txt`],
    ['overlong UTF-8 dot', `${ART}/1/${RUN}/artifacts/%C0%AE%C0%AE/x`],
    ['overlong UTF-8 slash', `${ART}/1%C0%AF${RUN}/artifacts/x`],
    ['three-byte overlong dot', `${ART}/1/${RUN}/artifacts/%E0%80%AE%E0%80%AE/x`],
    ['four-byte overlong slash', `${ART}/1%F0%80%80%AF${RUN}/x`],
    ['invalid UTF-8 byte', `${ART}/1/${RUN}/artifacts/%FF`],
    ['truncated UTF-8 sequence', `${ART}/1/${RUN}/artifacts/%C3`],
    ['UTF-16 surrogate in UTF-8', `${ART}/1/${RUN}/artifacts/%ED%A0%80`],
    ['lone percent', `${ART}/1/${RUN}/artifacts/50%`],
    ['percent with one hex digit', `${ART}/1/${RUN}/artifacts/a%2`],
    ['percent with non-hex digits', `${ART}/1/${RUN}/artifacts/a%zz`],
    ['double-encoded slash', `${ART}/1%252F${RUN}/x`],
    ['double-encoded dot-dot', `${ART}/1/${RUN}/artifacts/%252E%252E/x`],
    ['double-encoded experiment id (MLflow would serve experiment 1: reference §6.2)', `${ART}/%2531/${RUN}/artifacts/x`],
    ['escape spelled out with escapes', `${ART}/1/${RUN}/artifacts/%25%32%46x`],
    ['"@" with a quote (url.parse re-encodes the quote)', `${ART}/1/${RUN}/artifacts/model@v1/it's.txt`],
    ['"@" in the path with a brace in the query', `${ART}/1/${RUN}/artifacts/model@v1?x={y}`],
    ['"http:/" (http-proxy rewrites it to "http://")', `${ART}/1/${RUN}/artifacts/http:/x`],
    ['"https:/"', `${ART}/1/${RUN}/artifacts/https:/x`],
  ];
  it.each(refused)('%s', (_why, target) => {
    const result = canonicalizeTarget(target);
    expect(result.ok, JSON.stringify(result)).toBe(false);
    if (!result.ok) {
      expect(result.status).toBe(400);
      expect(result.reason.length).toBeGreaterThan(10);
    }
  });

  it('each refusal guards against a hop that would read the path differently', () => {
    expect(forwardedByHttpProxy('/api/2.0//mlflow/experiments/get')).toBe('/api/2.0/mlflow/experiments/get');
    expect(forwardedByHttpProxy(`${ART}/1/r/artifacts/http:/x`)).toBe(`${ART}/1/r/artifacts/http://x`);
    expect(forwardedByHttpProxy('/api/2.0/a\\b')).toBe('/api/2.0/a/b');
    expect(forwardedByHttpProxy('/api/2.0/mlflow/runs/get#x?run_id=1')).toBe('/api/2.0/mlflow/runs/get');
    expect(forwardedByHttpProxy(`${ART}/1/r/artifacts/model@v1/it's.txt`)).toBe(`${ART}/1/r/artifacts/model@v1/it%27s.txt`);
  });
});

describe('accepted', () => {
  it('splits off the query and names the prefix, version and route', () => {
    expect(canonicalizeTarget(`/api/2.0/mlflow/runs/get?run_id=${RUN}&run_uuid=${RUN}`)).toEqual({
      ok: true, path: '/api/2.0/mlflow/runs/get', query: `run_id=${RUN}&run_uuid=${RUN}`, prefix: 'api', version: '2.0', mlflowPath: '/mlflow/runs/get',
    });
    expect(canonicalizeTarget('/ajax-api/3.0/mlflow/traces/tr-1')).toMatchObject({ prefix: 'ajax-api', version: '3.0', mlflowPath: '/mlflow/traces/tr-1', query: '' });
    expect(canonicalizeTarget('/api/2.0/mlflow/runs/get?')).toMatchObject({ path: '/api/2.0/mlflow/runs/get', query: '' });
    expect(canonicalizeTarget('/api/2.0?x=1')).toMatchObject({ prefix: 'api', version: '2.0', mlflowPath: '/' });
  });

  it('knows non-API paths and versions MLflow does not serve', () => {
    expect(canonicalizeTarget('/health')).toMatchObject({ prefix: undefined, version: undefined, mlflowPath: '/health' });
    expect(canonicalizeTarget('/')).toMatchObject({ path: '/', prefix: undefined, mlflowPath: '/' });
    expect(canonicalizeTarget('/api/4.0/mlflow/traces')).toMatchObject({ prefix: 'api', version: undefined, mlflowPath: '/api/4.0/mlflow/traces' });
    expect(canonicalizeTarget('/api/2.0mlflow/experiments/search-datasets')).toMatchObject({ prefix: 'api', version: undefined });
    expect(canonicalizeTarget('/api')).toMatchObject({ prefix: 'api', version: undefined, mlflowPath: '/api' });
  });

  it('decodes percent-escapes once, so encoded ordinary characters reach the same route', () => {
    const target = canonicalizeTarget('/api/2.0/%6D%6c%66low/runs/log%2Dmetric');
    expect(target).toMatchObject({ ok: true, path: '/api/2.0/mlflow/runs/log-metric' });
    if (target.ok) expect(matchRule('POST', target.path)!.rule.name).toBe('runs/log-metric');
    expect(canonicalizeTarget('/api/2.0/mlflow/%7Euser%5Fx')).toMatchObject({ path: '/api/2.0/mlflow/~user_x' });
  });

  it('sees an encoded API prefix as the API, as MLflow does (decide fail-closed on this, not on the raw path)', () => {
    expect(canonicalizeTarget('/%61pi/2.0/mlflow/runs/get')).toMatchObject({ prefix: 'api', version: '2.0', mlflowPath: '/mlflow/runs/get' });
    expect(canonicalizeTarget('/ajax%2Dapi/3%2E0/mlflow/traces/tr-1')).toMatchObject({ prefix: 'ajax-api', version: '3.0' });
  });

  const legitimate: [string, string, string][] = [
    ['a space', `${ART}/1/${RUN}/artifacts/loss%20curve.png`, `${ART}/1/${RUN}/artifacts/loss curve.png`],
    ['a percent sign', `${ART}/1/${RUN}/artifacts/50%25.txt`, `${ART}/1/${RUN}/artifacts/50%.txt`],
    ['both, and more percent signs', `${ART}/1/${RUN}/artifacts/my%20file%25%25.txt`, `${ART}/1/${RUN}/artifacts/my file%%.txt`],
    ['an encoded dot inside a name', `${ART}/1/${RUN}/artifacts/model%2Epkl`, `${ART}/1/${RUN}/artifacts/model.pkl`],
    ['a dotfile and three dots', `${ART}/1/${RUN}/artifacts/.hidden/.../x`, `${ART}/1/${RUN}/artifacts/.hidden/.../x`],
    ['UTF-8', `${ART}/1/${RUN}/artifacts/caf%C3%A9%20%E2%98%83.txt`, `${ART}/1/${RUN}/artifacts/café ☃.txt`],
    ['an encoded question mark', `${ART}/1/${RUN}/artifacts/what%3F.txt`, `${ART}/1/${RUN}/artifacts/what?.txt`],
    ['characters requests leaves raw', `${ART}/1/${RUN}/artifacts/a[1];b=c,d'e(f)+g:i!j$k&l*m.txt`, `${ART}/1/${RUN}/artifacts/a[1];b=c,d'e(f)+g:i!j$k&l*m.txt`],
    ['an at sign', `${ART}/1/${RUN}/artifacts/model@v1;x=[1]+(2),~!$&*:.pkl`, `${ART}/1/${RUN}/artifacts/model@v1;x=[1]+(2),~!$&*:.pkl`],
    ['a colon not after http', `${ART}/1/${RUN}/artifacts/10:30:00.log`, `${ART}/1/${RUN}/artifacts/10:30:00.log`],
    ['a semicolon path parameter (kept literally, as MLflow does)', '/api/2.0/mlflow/runs/get;x=1', '/api/2.0/mlflow/runs/get;x=1'],
    ['a trailing slash (kept: MLflow and the table answer 404)', '/api/2.0/mlflow/runs/get/', '/api/2.0/mlflow/runs/get/'],
  ];
  it.each(legitimate)('an artifact name with %s', (_what, target, path) => {
    expect(canonicalizeTarget(target)).toMatchObject({ ok: true, path });
  });

  it('leaves the query string to the query parser', () => {
    expect(canonicalizeTarget('/api/2.0/mlflow-artifacts/artifacts?path=1%2Fr%2Fartifacts%2F..')).toMatchObject({ ok: true, query: 'path=1%2Fr%2Fartifacts%2F..' });
  });
});

describe('what is accepted is what MLflow acts on', () => {
  const accepted = [
    `/api/2.0/mlflow/runs/get?run_id=${RUN}`,
    `${ART}/1/${RUN}/artifacts/loss%20curve.png`,
    `${ART}/1/${RUN}/artifacts/50%25.txt`,
    `${ART}/1/${RUN}/artifacts/a[1];b=c,d'e(f)+g:i!j$k&l*m.txt`,
    `${ART}/1/${RUN}/artifacts/model@v1;x=[1]+(2),~!$&*:.pkl?q=%27`,
    `${ART}/1/${RUN}/artifacts/caf%C3%A9.txt?x={y}|z'@`,
    '/api/2.0/%6Dlflow/runs/get',
    '/ajax-api/2.0/mlflow/get-artifact?path=a\\b',
    '/api/2.0/mlflow/runs/get/',
  ];

  it.each(accepted)('http-proxy forwards %s byte for byte', (target) => {
    expect(canonicalizeTarget(target).ok).toBe(true);
    expect(forwardedByHttpProxy(target)).toBe(target);
  });

  it.each(accepted)('decoding %s again changes nothing (MLflow\'s artifact code decodes up to ten times)', (target) => {
    const result = canonicalizeTarget(target);
    if (!result.ok) throw new Error(result.reason);
    expect(result.path).not.toMatch(/%[0-9A-Fa-f]{2}/);
  });
});
