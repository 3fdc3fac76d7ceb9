// The server's own pages and probes, the UI, GraphQL and the assistant (reference §4, §5).
import type { RouteDef } from './route-rule.ts';

export const SERVER_ROUTES: readonly RouteDef[] = [
  { at: 'GET /health', access: 'public' },
  { at: 'GET /version', access: 'none' },
  { at: 'GET /', access: 'none' },
  { at: 'GET /static-files/{path...}', access: 'none', deviation: 'auth app: public (any path starting with /static); here the sign-in that guards the UI guards its assets too' },
  { at: 'GET /{api,ajax-api}/3.0/mlflow/server-info', access: 'none' },
  { at: '{GET,POST} /ajax-api/3.0/mlflow/ui-telemetry', access: 'none' },
  {
    at: '{GET,POST} /graphql', access: 'admin-only',
    deviation: 'auth app: field-level checks since 3.8, none in 2.17; one URL carries many operations in a body the gateway does not parse',
  },
  // FastAPI (uvicorn only): the router trusts loopback callers, and behind a gateway every caller is one.
  {
    at: 'ANY /ajax-api/3.0/mlflow/assistant/{rest...}', access: 'blocked',
    deviation: 'auth app: authenticated only, plus the upstream\'s own loopback check, which the gateway defeats by being local',
  },
];
