// The set-up most test files share: an MLflow-shaped upstream and a gateway in front of it, started
// before the file's tests and stopped after them.
import { afterAll, beforeAll } from 'vitest';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from './gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './mlflow-upstream.ts';

interface GatewayFixture {
  readonly upstream: MlflowUpstream;
  readonly gw: TestGateway;
}

export function gatewayWithUpstream(options: Omit<TestGatewayOptions, 'upstream'> = {}): GatewayFixture {
  const fixture = {} as { upstream: MlflowUpstream; gw: TestGateway };
  beforeAll(async () => {
    fixture.upstream = await startMlflowUpstream();
    fixture.gw = await startTestGateway({ ...options, upstream: fixture.upstream.url });
  });
  afterAll(async () => {
    await fixture.gw?.close();
    await fixture.upstream?.close();
  });
  return fixture;
}
