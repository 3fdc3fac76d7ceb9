// The real MLflow servers of this test run (started by test/mlflow/global-setup.ts) as a test file
// uses them: the ones it can run against, or, when there are none, one skipped test whose name says
// why and how to provide an MLflow.
import { describe, inject, it } from 'vitest';
import type { SharedMlflowServer } from '../mlflow/global-setup.ts';

export function mlflowServersFor(capability: string, options: { mlflow3Only?: boolean } = {}): SharedMlflowServer[] {
  const all = inject('mlflowServers');
  const servers = options.mlflow3Only ? all.filter((server) => !server.version.startsWith('2.')) : all;
  if (servers.length === 0) {
    const why = inject('mlflowProblem') || 'no MLflow 3 among the servers found (this needs MLflow 3 routes)';
    describe(`${capability} (skipped: ${why})`, () => {
      it.skip(why, () => {});
    });
  }
  return servers;
}
