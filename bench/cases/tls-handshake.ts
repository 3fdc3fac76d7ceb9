// A new TLS connection per request: what terminating TLS costs when clients do not reuse
// connections (scripts that call the MLflow API once, health checks).
import { runNodeClient } from '../load/node-client.ts';
import type { BenchCase } from './bench-case.ts';

/** Connections in flight at once: enough to keep two cores busy, few enough not to queue for long. */
const CONCURRENCY = 16;

export const tlsHandshake: BenchCase = {
  name: 'tls-handshake',
  unit: 'handshakes/s',
  about: `full TLS handshake (no resumption, EC P-256 cert made by mlgate) + GET /health per connection, ${CONCURRENCY} concurrent, Node client in its own process; nginx without auth_basic (with it, bcrypt per request would be measured, not TLS)`,
  flavor: 'tls',
  targets: ['nginx', 'caddy', 'mlgate', 'mlgate-auto'],
  async measure(ctx, _target, endpoint) {
    const args = [`${endpoint!.url}/health`, String(CONCURRENCY), String(ctx.options.durationS), ctx.ws.authorization];
    const result = await runNodeClient<{ completed: number; perS: number; p50Ms: number; p99Ms: number; failed: number; firstError: string | null }>('tls-handshakes', args, ctx.options.durationS + 30);
    if (result.completed === 0 || result.failed > result.completed / 100) {
      throw new Error(`${result.failed} of ${result.completed + result.failed} connections failed (${result.firstError})`);
    }
    return { value: result.perS, p50Ms: result.p50Ms, p99Ms: result.p99Ms, extra: { failed: result.failed } };
  },
  notes: (extra) => (extra.failed ? `${extra.failed} failed connections` : ''),
};
