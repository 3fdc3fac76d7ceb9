import { defineConfig } from 'vitest/config';

// Tests start real servers and processes; CI machines are small.
const shared = { testTimeout: 60_000, hookTimeout: 60_000 };
// Gives each run a directory where its test workers get the compiled CLI once (test/helpers/compiled-cli.ts).
const CLI_BUILD = 'test/helpers/cli-build.ts';
const FORWARDING_TESTS = [
  'request-smuggling', 'request-failures', 'upstream-errors', 'artifact-streaming', 'several-upstreams',
  'path-routes', 'slow-clients', 'search-filtering', 'forwarded-headers', 'graceful-shutdown',
];

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    // .ci/run reads the JSON; the last one names every skipped test and why.
    reporters: ['default', ['json', { outputFile: '.test-results/results.json' }], './test/helpers/skipped-reporter.ts'],
    projects: [
      { test: { ...shared, name: 'gateway', include: ['test/*.test.ts'], globalSetup: [CLI_BUILD] } },
      // The forwarding tests again through the other HTTP forwarder (proxy.forwarder: http-proxy; docs/performance.md).
      {
        test: {
          ...shared,
          name: 'http-proxy',
          include: FORWARDING_TESTS.map((name) => `test/${name}.test.ts`),
          globalSetup: [CLI_BUILD],
          env: { MLGATE_TEST_FORWARDER: 'http-proxy' },
        },
      },
      // Against the real MLflow server and Python client: the servers are started once per run, and
      // only when a file of this project runs.
      {
        test: {
          ...shared,
          name: 'mlflow',
          include: ['test/mlflow/**/*.test.ts'],
          globalSetup: ['test/mlflow/global-setup.ts', CLI_BUILD],
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      // The real MLflow clients' runs, artifacts and models through the http-proxy forwarder too.
      {
        test: {
          ...shared,
          name: 'mlflow-http-proxy',
          include: ['test/mlflow/python-client.test.ts'],
          globalSetup: ['test/mlflow/global-setup.ts', CLI_BUILD],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          env: { MLGATE_TEST_FORWARDER: 'http-proxy' },
        },
      },
    ],
  },
});
