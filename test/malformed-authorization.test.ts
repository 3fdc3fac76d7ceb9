// Garbage in the Authorization header gets a clear 400 or 401 and never hurts anyone else.
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream } from './helpers/mlflow-upstream.ts';
import { gatewayWithUpstream } from './helpers/fixture.ts';

const fixture = gatewayWithUpstream();

const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64');

const cases: [string, string, number, RegExp][] = [
  ['bad base64', 'Basic !!!notbase64!!!', 400, /not valid base64/],
  ['base64 with wrong padding', 'Basic YWxpY2U6cHc', 400, /not valid base64/],
  ['no colon', `Basic ${b64('alice')}`, 400, /no ":"/],
  ['empty user', `Basic ${b64(':alice-password')}`, 400, /empty user name/],
  ['non-UTF-8 bytes', `Basic ${b64(Buffer.from([0x61, 0xff, 0xfe, 0x3a, 0x70]))}`, 400, /not valid UTF-8/],
  ['control characters in the user', `Basic ${b64('al\u0001ice:pw')}`, 400, /control characters/],
  ['empty Basic', 'Basic ', 400, /empty/],
  ['scheme only', 'Basic', 400, /empty/],
  ['unknown scheme', 'Digest username="alice"', 400, /unsupported authorization scheme "digest"/],
  ['absurd length', `Basic ${'A'.repeat(9000)}`, 400, /longer than 8192/],
];

describe('a malformed Authorization header', () => {
  it.each(cases)('%s gets %i with the reason', async (_name, header, status, reason) => {
    const before = fixture.upstream.requests.length;
    const res = await fixture.gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: { authorization: header }, body: '{}' });
    expect(res.status).toBe(status);
    const body = res.json<{ error_code: string; message: string }>();
    expect(body.error_code).toBe('INVALID_PARAMETER_VALUE');
    expect(body.message).toMatch(reason);
    expect(fixture.upstream.requests.length).toBe(before);
  });

  it('a header too large for Node to parse gets 431 and the gateway keeps serving', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: fixture.gw.port, ca: fixture.gw.ca, servername: 'localhost' }, () => {
        socket.write(`GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${'A'.repeat(20_000)}\r\n\r\n`);
      });
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect((await fixture.gw.request('/echo', { auth: ['alice', 'alice-password'] })).status).toBe(200);
  });

  it('a password containing colons and non-ASCII is read whole', async () => {
    const upstream2 = await startMlflowUpstream();
    const gw2 = await startTestGateway({ upstream: upstream2.url, users: { 'zoë': 'pa:ss:wörd€' } });
    try {
      const ok = await gw2.request('/echo', { headers: { authorization: `Basic ${b64('zoë:pa:ss:wörd€')}` } });
      expect(ok.status).toBe(200);
      expect(upstream2.requests.at(-1)!.headers['x-forwarded-user']).toBe(encodeURIComponent('zoë'));
    } finally {
      await gw2.close();
      await upstream2.close();
    }
  });
});
