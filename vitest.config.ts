import { defineConfig } from 'vitest/config';

// Tests start real servers and processes; CI machines are small.
const shared = { testTimeout: 60_000, hookTimeout: 60_000 };

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', ['json', { outputFile: '.test-results/results.json' }]],
    projects: [
      { test: { ...shared, name: 'gateway', include: ['test/*.test.ts'] } },
      // Against the real MLflow server and Python client: the servers are started once per run, and
      // only when a file of this project runs.
      {
        test: {
          ...shared,
          name: 'mlflow',
          include: ['test/mlflow/**/*.test.ts'],
          globalSetup: ['test/mlflow/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
