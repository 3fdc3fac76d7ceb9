import type { GatewayError } from '../http/gateway-error.ts';

/** 502 when the upstream cannot be reached or broke off, 504 when it stayed silent too long. */
export function upstreamFailure(err: NodeJS.ErrnoException, upstream: URL, timedOut: boolean, timeoutMs: number): GatewayError {
  if (timedOut) {
    return {
      status: 504,
      code: 'TEMPORARILY_UNAVAILABLE',
      message: `the MLflow tracking server at ${upstream.origin} did not answer within ${timeoutMs / 1000} s (proxy.timeout)`,
    };
  }
  const reason = err.code ?? err.message;
  const hint = err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH'
    ? `; is it running? Start it with: mlflow server --host ${upstream.hostname} --port ${upstream.port || (upstream.protocol === 'https:' ? 443 : 80)}`
    : '';
  return {
    status: 502,
    code: 'TEMPORARILY_UNAVAILABLE',
    message: `cannot reach the MLflow tracking server at ${upstream.origin} (${reason})${hint}`,
  };
}

/**
 * 503 when every server of a list is out of rotation: each named with why, and what brings it back.
 * Only lists of two or more get here (a lone server is always tried, and answers with its own error).
 */
export function noServerUp(servers: readonly { origin: string; lastError?: string }[]): GatewayError {
  const named = servers.map((server) => `${server.origin} (${server.lastError ?? 'down'})`).join(', ');
  return {
    status: 503,
    code: 'TEMPORARILY_UNAVAILABLE',
    message: `none of the MLflow tracking servers is up: ${named}; each is back after proxy.healthCheck.passes good health checks`,
    headers: { 'retry-after': '5' },
  };
}
