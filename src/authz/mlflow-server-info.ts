// What the MLflow behind the gateway says about itself: its version (GET /version, plain text, on
// 2.x and 3.x) and whether it serves workspaces (GET /api/3.0/mlflow/server-info, 3.x only). The
// start-up log and admins' /-/readyz name the version; the workspace feature reads the other fact.
import type { Upstream } from '../proxy/upstream-pool.ts';
import { MlflowClient, MlflowError } from './mlflow-client.ts';

export interface MlflowServerFacts {
  /** What GET /version answered, trimmed; undefined if it could not be learned. */
  version?: string;
  /** server-info's workspaces_enabled; false when the route is missing (MLflow 2.x, 404) or says false; undefined when unknown (upstream down, an error). */
  workspacesEnabled?: boolean;
  /** Date.now() of the probe. */
  checkedAt: number;
  /** Why something is unknown, naming the upstream. */
  problem?: string;
}

/** The newest release the route lists cover (src/authz/routes-*.ts; reference mlflow-newest-routes.md). */
export const NEWEST_KNOWN_MLFLOW = '3.16';

/** An unknown fact is asked again this soon, not kept for refreshMs. */
const UNKNOWN_RETRY_MS = 2000;

export class MlflowServerInfo {
  private readonly client: MlflowClient;
  private readonly refreshMs: number;
  private known?: MlflowServerFacts;
  private probing?: Promise<MlflowServerFacts>;

  /** `upstream`: the MLflow server, or the gateway's pool of them (each probe asks one that is up; they share one store). */
  constructor(options: { upstream: Upstream; timeoutMs: number; refreshMs?: number; userHeader?: string }) {
    this.client = new MlflowClient(options);
    this.refreshMs = options.refreshMs ?? 30_000;
  }

  /** The facts, probing now when never probed or older than refreshMs; concurrent callers share one probe; never throws. */
  facts(): Promise<MlflowServerFacts> {
    const known = this.known;
    const unknown = known?.version === undefined || known.workspacesEnabled === undefined;
    if (known && Date.now() - known.checkedAt < (unknown ? Math.min(UNKNOWN_RETRY_MS, this.refreshMs) : this.refreshMs)) return Promise.resolve(known);
    this.probing ??= this.probe().catch((err: unknown) => ({ checkedAt: Date.now(), problem: `asking ${this.client.origin} failed: ${String(err)}` })).then((facts) => {
      this.known = facts;
      this.probing = undefined;
      return facts;
    });
    return this.probing;
  }

  /** The last facts learned, without probing. */
  last(): MlflowServerFacts | undefined {
    return this.known;
  }

  close(): void {
    this.client.close();
  }

  private async probe(): Promise<MlflowServerFacts> {
    const checkedAt = Date.now();
    const server = `the MLflow tracking server at ${this.client.origin}`;
    const problems: string[] = [];
    const ask = (target: string) => this.client.request('GET', target).catch((err: unknown) => {
      problems.push(err instanceof MlflowError ? err.message : `${server}: ${String(err)}`);
      return undefined;
    });
    const [versionAnswer, infoAnswer] = await Promise.all([ask('/version'), ask('/api/3.0/mlflow/server-info')]);
    let version: string | undefined;
    if (versionAnswer) {
      const text = versionAnswer.text.trim();
      // A PEP 440 version (3.11.1, 3.17.0rc1, 3.17.0.dev0); anything else is not MLflow's answer.
      if (versionAnswer.status === 200 && text.length <= 64 && /^\d+(\.\d+)+[\w.+-]*$/.test(text)) version = text;
      else problems.push(`${server} answered GET /version with ${versionAnswer.status === 200 ? `"${text.slice(0, 40)}", not a version` : versionAnswer.status}`);
    }
    let workspacesEnabled: boolean | undefined;
    if (infoAnswer?.status === 404) workspacesEnabled = false; // MLflow 2.x: no such route
    else if (infoAnswer?.status === 200 && infoAnswer.json) workspacesEnabled = infoAnswer.json.workspaces_enabled === true;
    else if (infoAnswer) problems.push(`${server} answered GET /api/3.0/mlflow/server-info with ${infoAnswer.status}${infoAnswer.json ? '' : ', not a JSON object'}`);
    // Unreachable: both requests say the same.
    const problem = [...new Set(problems)].join('; ') || undefined;
    return { checkedAt, ...(version !== undefined && { version }), ...(workspacesEnabled !== undefined && { workspacesEnabled }), ...(problem && { problem }) };
  }
}

/** Whether `version` (like 3.17.0, 3.17.0rc1, 3.17.0.dev0, 4.0.0) is newer than every release the route lists cover (anything above 3.16.x). */
export function newerThanKnown(version: string): boolean {
  const match = /^\s*v?(\d+)(?:\.(\d+))?/.exec(version);
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2] ?? 0)];
  const [knownMajor, knownMinor] = NEWEST_KNOWN_MLFLOW.split('.').map(Number) as [number, number];
  return major > knownMajor || (major === knownMajor && minor > knownMinor);
}
