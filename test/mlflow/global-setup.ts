// One real MLflow server per installed version for the whole test run (the conformance files share
// them; each file uses its own experiment and model names). Without an MLflow the suite is skipped
// with one line saying why and how to enable it.
import type { TestProject } from 'vitest/node';
import { discoverMlflow, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

export interface SharedMlflowServer {
  version: string;
  python: string;
  url: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    mlflowServers: SharedMlflowServer[];
    /** Why there are no servers: the skip reason each file puts in its title. */
    mlflowProblem: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { installations, problem } = discoverMlflow();
  if (problem) console.log(`\n[real-MLflow suite skipped] ${problem}\n`);
  const started = Date.now();
  const servers: RunningMlflow[] = await Promise.all(installations.map((install) => startMlflowServer(install)));
  if (servers.length) console.log(`[real-MLflow suite] MLflow ${servers.map((s) => `${s.version} at ${s.url}`).join(', ')} (started in ${Date.now() - started} ms)`);
  project.provide('mlflowServers', servers.map(({ version, python, url }) => ({ version, python, url })));
  project.provide('mlflowProblem', problem ?? '');
  return async () => {
    await Promise.all(servers.map((server) => server.close()));
  };
}
