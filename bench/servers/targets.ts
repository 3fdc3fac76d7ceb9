// The targets a case is run against, each started the first time a case needs it and stopped
// once no later case does (an idle server still takes memory and wakes up for its timers).
import type { Baseline } from '../lib/baseline.ts';
import type { TargetName } from '../lib/options.ts';
import { processTree, stopProcess } from '../lib/processes.ts';
import type { Workspace } from '../lib/workspace.ts';
import { startCaddy, type CaddyProxy } from './caddy.ts';
import { ConfigRejected, startMlgate, type Mlgate } from './mlgate.ts';
import { startNginxProxy, type NginxProxy } from './nginx-proxy.ts';
import type { Upstream } from './upstream.ts';
import { runLoad } from '../load/http-load.ts';
import { LOG_METRIC } from '../lib/mlflow-fixture.ts';

/** Which set-up of a target a case measures. */
export type Flavor = 'auth' | 'noauth' | 'stream' | 'tls';
export type InstanceKey = 'nginx' | 'caddy' | 'mlgate' | 'mlgate-baseline' | 'mlgate-auto' | 'mlgate-tls' | 'mlgate-baseline-tls' | 'mlgate-auto-tls';

export interface Endpoint {
  target: TargetName;
  /** How the row is labelled in the table, e.g. "nginx auth_basic". */
  label: string;
  url: string;
  /** The processes whose memory counts as this target's (master and workers, primary and workers). */
  pids(): number[];
  /** Set for mlgate: where `mlgate token issue` must run to reach the same token file. */
  mlgate?: Mlgate;
  /** Set for nginx with auth_basic: drops the bcrypt checks it still owes clients that have left (see NginxProxy.restart). */
  dropBacklog?: () => Promise<void>;
}

/** A target that cannot run here (not installed, or a feature the gateway does not have yet). */
export class Unavailable extends Error {}

type Instance = NginxProxy | CaddyProxy | Mlgate;

export function instanceFor(target: TargetName, flavor: Flavor): InstanceKey | 'upstream' | undefined {
  switch (target) {
    case 'direct': return flavor === 'tls' ? undefined : 'upstream';
    case 'nginx': return 'nginx';
    case 'caddy': return flavor === 'noauth' ? undefined : 'caddy';
    case 'mlgate': return flavor === 'tls' ? 'mlgate-tls' : 'mlgate';
    case 'mlgate-baseline': return flavor === 'tls' ? 'mlgate-baseline-tls' : 'mlgate-baseline';
    case 'mlgate-auto': return flavor === 'tls' ? 'mlgate-auto-tls' : 'mlgate-auto';
  }
}

/**
 * Seconds of unmeasured load on a freshly started gateway. Fresh from start-up, Node ran 30-50%
 * slower for its first 10-15 s under load on the 2-core machine (the JIT, the heap sizing itself):
 * without this, the first case to use a gateway was charged for it.
 */
const WARM_UP_S = 8;

async function warmUp(url: string, authorization: string): Promise<void> {
  const warm = await runLoad({ url: url + LOG_METRIC, script: 'post-metric', threads: 2, connections: 50, durationS: WARM_UP_S, env: { BENCH_AUTHORIZATION: authorization } });
  if (warm.non2xx) throw new Error(`the warm-up of ${url} got ${warm.non2xx} answers that were not 2xx`);
}

export class Targets {
  private readonly started = new Map<InstanceKey, Promise<Instance>>();

  constructor(
    private readonly ws: Workspace,
    private readonly upstream: Upstream,
    private readonly installed: { nginx: boolean; caddy: boolean },
    /** --baseline's build, for mlgate-baseline. */
    private readonly baseline?: Baseline,
  ) {}

  async endpoint(target: TargetName, flavor: Flavor): Promise<Endpoint> {
    const key = instanceFor(target, flavor);
    if (!key) throw new Unavailable(`not applicable to ${target}`);
    if (key === 'upstream') {
      const pids = () => this.upstream.processes.flatMap((p) => processTree(p.pid));
      return { target, label: 'direct (no proxy)', url: this.upstream.url, pids };
    }
    const instance = await this.instance(key);
    if ('noauth' in instance) {
      const labels: Record<Flavor, string> = { auth: 'nginx auth_basic', noauth: 'nginx, no auth', stream: 'nginx auth_basic, streaming', tls: 'nginx TLS, no auth' };
      const dropBacklog = flavor === 'auth' || flavor === 'stream' ? () => instance.restart() : undefined;
      return { target, label: labels[flavor], url: instance[flavor], pids: () => processTree(instance.process.pid), dropBacklog };
    }
    if ('tls' in instance) {
      return { target, label: flavor === 'tls' ? 'caddy TLS basicauth' : 'caddy basicauth', url: flavor === 'tls' ? instance.tls : instance.auth, pids: () => [instance.process.pid] };
    }
    const label = `${target === 'mlgate-baseline' ? this.baseline!.label : target}${flavor === 'tls' ? ' TLS' : ''}`;
    return { target, label, url: instance.url, pids: () => processTree(instance.process.pid), mlgate: instance };
  }

  /** Stops every instance not in `keep`. */
  async release(keep: Set<InstanceKey>): Promise<void> {
    for (const [key, starting] of [...this.started]) {
      if (keep.has(key)) continue;
      this.started.delete(key);
      const instance = await starting.catch(() => undefined);
      if (instance) await stopProcess(instance.process);
    }
  }

  private instance(key: InstanceKey): Promise<Instance> {
    let starting = this.started.get(key);
    if (!starting) {
      starting = this.start(key);
      // A failed start is remembered, so later rounds and cases report it instead of retrying.
      starting.catch(() => {});
      this.started.set(key, starting);
    }
    return starting;
  }

  private async start(key: InstanceKey): Promise<Instance> {
    const upstreamUrl = this.upstream.url;
    switch (key) {
      case 'nginx':
        if (!this.installed.nginx) throw new Unavailable('nginx is not installed');
        return startNginxProxy(this.ws, upstreamUrl);
      case 'caddy':
        if (!this.installed.caddy) throw new Unavailable('caddy is not installed (apt-get install caddy)');
        return startCaddy(this.ws, upstreamUrl);
      default: {
        const workersAuto = key.startsWith('mlgate-auto');
        // The same config and flags as mlgate; only the build differs.
        const main = key.startsWith('mlgate-baseline') ? this.baseline?.main : undefined;
        if (key.startsWith('mlgate-baseline') && !main) throw new Error('mlgate-baseline needs --baseline <git revision>');
        try {
          const gateway = await startMlgate(this.ws, { name: key, upstreamUrl, tls: key.endsWith('-tls'), workersAuto, ...(main ? { main } : {}) });
          await warmUp(gateway.url, this.ws.authorization);
          return gateway;
        } catch (err) {
          if (err instanceof ConfigRejected && workersAuto) throw new Unavailable(`gateway does not take \`workers: auto\` yet (${err.message})`);
          throw err;
        }
      }
    }
  }
}
