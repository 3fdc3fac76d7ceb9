// deploy/: the systemd unit, the compose file and the Kubernetes example. No init system, Docker
// engine or cluster runs here, so each file is checked against what it depends on: systemd-analyze
// for the unit, and for all three the gateway's own configuration schema (every MLGATE_* name, every
// value, through loadConfig), its routes (probes) and the Dockerfile (ports, volumes, user).
// Last, what a service runs without the dev dependencies: npm start's build step and bin/mlgate.js.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, posix, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parsePolicy } from '../src/authz/policy.ts';
import { CONFIG_FILE_VARIABLE } from '../src/config/environment.ts';
import { environmentVariableNames, loadConfig } from '../src/config/load.ts';
import { configSchema, type Config } from '../src/config/schema.ts';
import { PUBLIC_CONTROL_PATHS } from '../src/control/app.ts';
import { PROJECT_ROOT } from './helpers/cli.ts';
import { gatewayWithUpstream } from './helpers/fixture.ts';

const read = (path: string) => readFileSync(join(PROJECT_ROOT, path), 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'mlgate-deploy-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const DEFAULTS = configSchema.parse({});
const KNOWN_VARIABLES = new Set([...environmentVariableNames().keys(), CONFIG_FILE_VARIABLE]);

function expectKnownVariables(names: string[], where: string): void {
  const mlgate = names.filter((name) => name.startsWith('MLGATE_'));
  expect(mlgate.filter((name) => !KNOWN_VARIABLES.has(name)), `${where}: not variables of the configuration schema`).toEqual([]);
}

/** The configuration a process started with this environment (and working directory) would get. */
function configFor(env: Record<string, string>, cwd: string, configPath?: string): Config {
  return loadConfig({ env, cwd, configPath }).config;
}

/** The image: its runtime stage's user, volumes and port (the build test runs its commands). */
const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
const runtime = dockerfile.slice(dockerfile.map((line) => line.startsWith('FROM ')).lastIndexOf(true));
const imageUser = runtime.filter((line) => line.startsWith('USER ')).at(-1)!.split(/\s+/)[1]!;
const imageVolumes = JSON.parse(runtime.find((line) => line.startsWith('VOLUME '))!.slice('VOLUME '.length)) as string[];
const imageWorkdir = runtime.filter((line) => line.startsWith('WORKDIR ')).at(-1)!.split(/\s+/)[1]!;

describe('deploy/systemd/mlgate.service', () => {
  const unitPath = join(PROJECT_ROOT, 'deploy', 'systemd', 'mlgate.service');
  const unit = read('deploy/systemd/mlgate.service');
  /** key -> values, in order, of the [Service] section (comments and other sections left out). */
  const section = (name: string): Map<string, string[]> => {
    const entries = new Map<string, string[]>();
    const body = unit.split(/^\[/m).find((part) => part.startsWith(`${name}]`)) ?? '';
    for (const line of body.split('\n').slice(1)) {
      const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
      if (match) entries.set(match[1]!, [...(entries.get(match[1]!) ?? []), match[2]!]);
    }
    return entries;
  };
  const service = section('Service');
  const one = (key: string) => service.get(key)?.at(-1);

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  it.skipIf(analyze.error)('passes systemd-analyze verify, but for a user or program this machine does not have', () => {
    const verify = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8', timeout: 60_000 });
    const lines = `${verify.stdout}\n${verify.stderr}`.split('\n').map((line) => line.trim()).filter(Boolean);
    const [program] = one('ExecStart')!.split(/\s+/);
    const tolerated = [
      new RegExp(`Command ${program!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not executable: No such file or directory`),
      /\b(user|group)\b.*\bmlgate\b|\bmlgate\b.*\b(user|group)\b/i,
    ];
    // Complaints about this unit; other units on the machine that it pulls in are not ours to judge.
    const ours = lines.filter((line) => line.includes('mlgate'));
    expect(ours.filter((line) => !tolerated.some((pattern) => pattern.test(line))), lines.join('\n')).toEqual([]);
    if (!ours.length) expect(verify.status, lines.join('\n')).toBe(0);
  });

  it('runs the build as its own user with a read-only system, state and configuration directories', () => {
    expect(one('User')).toMatch(/^[a-z][a-z0-9-]*$/);
    expect(one('User')).not.toBe('root');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('Restart')).toBe('on-failure');
    expect(one('StateDirectory')).toBe('mlgate');
    expect(one('ConfigurationDirectory')).toBe('mlgate');
    expect(one('WorkingDirectory')).toBe('/var/lib/mlgate');
    // Logs go to stdout, so to the journal; never a file under a read-only /var/log.
    expect(one('StandardOutput') ?? 'journal').toBe('journal');
    // The compiled CLI, as npm start and the image run it.
    const exec = one('ExecStart')!.split(/\s+/);
    expect(exec).toContain('--max-semi-space-size=8');
    expect(exec.find((arg) => arg.endsWith('.js'))).toMatch(/\/dist\/cli\/main\.js$/);
    expect(exec.slice(exec.indexOf('serve'))).toEqual(['serve', '--config', '/etc/mlgate/mlgate.yaml']);
    // Long enough for requests in flight to finish (shutdownGrace).
    expect(Number.parseInt(one('TimeoutStopSec')!, 10) * 1000).toBeGreaterThan(DEFAULTS.shutdownGrace);
    expectKnownVariables((service.get('Environment') ?? []).map((value) => value.split('=')[0]!), 'Environment=');
  });

  it('claims a reload only if the gateway handles SIGHUP', () => {
    const sources = spawnSync('grep', ['-rl', 'SIGHUP', join(PROJECT_ROOT, 'src')], { encoding: 'utf8' }).stdout.trim();
    expect(service.has('ExecReload')).toBe(sources !== '');
  });

  it('its configuration file is valid, reads from /etc/mlgate and writes to /var/lib/mlgate', () => {
    const { config, file } = loadConfig({ configPath: join(PROJECT_ROOT, 'deploy', 'systemd', 'mlgate.yaml'), cwd: '/var/lib/mlgate', env: {} });
    expect(file).toBeDefined();
    const state = '/var/lib/mlgate/';
    // The default htpasswd file for the working directory: the first start creates it with an admin.
    expect(config.auth.htpasswd).toBe(resolve('/var/lib/mlgate', DEFAULTS.auth.htpasswd));
    for (const written of [config.auth.htpasswd, config.tls.selfSignedDir, config.session.keyFile, config.session.revocationsFile, config.tokens.file]) {
      expect(isAbsolute(written), written).toBe(true); // the same files for `mlgate user ... --config` from anywhere
      expect(written.startsWith(state), written).toBe(true);
    }
    expect(config.authz.policyFile.startsWith('/etc/mlgate/')).toBe(true);
    expect(config.tls.enabled).toBe(true);
  });
});

/** ${NAME:-default}, ${NAME:?message} (unset or empty: compose stops with the message) and ${NAME} as Compose fills them in. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}/g, (_, name: string, kind?: string, word?: string) => {
    if (env[name]) return env[name];
    if (kind === ':?') throw new Error(`${name}: ${word}`);
    return kind === ':-' ? word! : '';
  });
}

describe('deploy/docker-compose.yml', () => {
  const text = read('deploy/docker-compose.yml');
  type Service = { build?: string; image?: string; command?: string; ports?: string[]; environment?: Record<string, string>; volumes?: string[]; networks?: string[]; depends_on?: string[]; stop_grace_period?: string };
  const compose = (env: Record<string, string> = {}) => parse(interpolate(text, env)) as { services: Record<string, Service>; networks: Record<string, unknown>; volumes: Record<string, unknown> };
  const { services, networks, volumes } = compose();
  const mlgate = services.mlgate!;
  const mlflow = services.mlflow!;

  it('builds the image from the checkout', () => {
    const context = resolve(PROJECT_ROOT, 'deploy', mlgate.build!);
    expect(readFileSync(join(context, 'Dockerfile'), 'utf8')).toBe(read('Dockerfile'));
  });

  it('configures the gateway with real variables, and the result is a valid configuration', () => {
    expectKnownVariables(Object.keys(mlgate.environment!), 'environment');
    const config = configFor(mlgate.environment!, scratch);
    expect(config.tls.enabled).toBe(true);
    // The names in the certificate: the one clients use (default localhost) and the service's own name.
    expect(config.tls.hosts).toEqual(['localhost', 'mlgate']);
    const named = configFor(compose({ MLGATE_PUBLIC_NAME: 'mlflow.example.com' }).services.mlgate!.environment!, scratch);
    expect(named.tls.hosts).toEqual(['mlflow.example.com', 'mlgate']);
  });

  it('reaches MLflow by its service name on a network both are on, and only mlgate publishes a port', () => {
    const config = configFor(mlgate.environment!, scratch);
    expect(upstreamOrigins(config)).toHaveLength(1);
    const upstream = new URL(upstreamOrigins(config)[0]!);
    expect(upstream.hostname).toBe('mlflow');
    expect(mlflow.command).toContain(`--port ${upstream.port}`);
    expect(mlflow.command).toContain('--host 0.0.0.0');
    expect(mlflow.ports).toBeUndefined();
    const shared = mlgate.networks!.filter((name) => mlflow.networks!.includes(name));
    expect(shared.length).toBeGreaterThan(0);
    for (const name of shared) expect(Object.keys(networks)).toContain(name); // user-defined: names resolve
    expect(mlgate.depends_on).toContain('mlflow');
    // host:container, the container side the port the gateway listens on.
    expect(mlgate.ports!.map((port) => port.split(':').at(-1))).toEqual([String(config.port)]);
  });

  it('keeps the image\'s volumes (owned by its user) in named volumes, so first start can write them', () => {
    const mounts = mlgate.volumes!.map((volume) => volume.split(':'));
    expect(mounts.map(([, target]) => target).sort()).toEqual([...imageVolumes].sort());
    for (const [source] of mounts) expect(Object.keys(volumes)).toContain(source);
    const chown = runtime.find((line) => /^RUN .*chown/.test(line))!;
    for (const dir of imageVolumes) expect(chown).toMatch(new RegExp(`chown ${imageUser}:${imageUser} .*${dir}\\b`));
    // The gateway's default files are in those volumes: its working directory is the image's WORKDIR.
    const config = configFor(mlgate.environment!, imageWorkdir);
    for (const written of [config.auth.htpasswd, config.tls.selfSignedDir, config.session.keyFile, config.tokens.file]) {
      const path = posix.resolve(imageWorkdir, written);
      expect(imageVolumes.some((dir) => path.startsWith(`${dir}/`) || path === dir), path).toBe(true);
    }
  });

  it('waits for requests in flight when stopped', () => {
    expect(Number.parseInt(mlgate.stop_grace_period!, 10) * 1000).toBeGreaterThan(DEFAULTS.shutdownGrace);
  });

  it('is what docs/docker.md shows', () => {
    const readme = read('docs/docker.md');
    const at = readme.indexOf('(deploy/docker-compose.yml)');
    expect(at).toBeGreaterThan(0);
    const block = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at))![1];
    expect(block).toBe(text);
  });
});

describe('deploy/kubernetes/mlgate.yaml', () => {
  type Probe = { httpGet: { path: string; port: string | number; scheme?: string } };
  type Mount = { name: string; mountPath: string; readOnly?: boolean };
  type Container = {
    image: string; args?: string[]; env?: { name: string; value?: string }[];
    ports: { name?: string; containerPort: number }[]; volumeMounts: Mount[];
    startupProbe?: Probe; livenessProbe: Probe; readinessProbe: Probe;
    securityContext?: { readOnlyRootFilesystem?: boolean };
  };
  type Volume = { name: string; configMap?: { name: string }; secret?: { secretName: string }; persistentVolumeClaim?: { claimName: string } };
  type Resource = { kind: string; metadata: { name: string; labels?: Record<string, string> }; data?: Record<string, string>; stringData?: Record<string, string>; spec?: Record<string, unknown> };
  const documents = parseAllDocuments(read('deploy/kubernetes/mlgate.yaml')).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Resource;
  });
  const find = (kind: string, name?: string) => {
    const found = documents.find((doc) => doc.kind === kind && (name === undefined || doc.metadata.name === name));
    expect(found, `${kind} ${name ?? ''}`).toBeDefined();
    return found!;
  };
  const deployment = find('Deployment').spec as {
    replicas: number; selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[]; volumes: Volume[]; terminationGracePeriodSeconds: number; securityContext: { runAsUser: number; fsGroup?: number } } };
  };
  const pod = deployment.template.spec;
  const container = pod.containers[0]!;
  const env = Object.fromEntries((container.env ?? []).map(({ name, value }) => [name, value ?? '']));

  /** The file a path in the container is: the ConfigMap or Secret key behind it, or a writable volume. */
  function backing(path: string): { volume: Volume; mount: Mount; key: string } {
    const mount = container.volumeMounts.filter((m) => path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    expect(mount, `${path} is on no volume`).toBeDefined();
    const volume = pod.volumes.find((v) => v.name === mount!.name)!;
    expect(volume, mount!.name).toBeDefined();
    return { volume, mount: mount!, key: path.slice(mount!.mountPath.length + 1) };
  }
  function fileText(path: string): string {
    const { volume, key } = backing(path);
    const source = volume.configMap ? find('ConfigMap', volume.configMap.name).data : volume.secret ? find('Secret', volume.secret.secretName).stringData : undefined;
    expect(source?.[key], `${path}: no key ${key} in its ConfigMap or Secret`).toBeDefined();
    return source![key]!;
  }

  /** The configuration the pod gets: its environment, the ConfigMap's file at MLGATE_CONFIG. */
  function podConfig(): Config {
    expectKnownVariables(Object.keys(env), 'env');
    const copy = join(scratch, 'k8s-mlgate.yaml');
    writeFileSync(copy, fileText(env[CONFIG_FILE_VARIABLE]!));
    return configFor({ ...env, [CONFIG_FILE_VARIABLE]: copy }, imageWorkdir);
  }

  it('has the configuration, users, Deployment and Service', () => {
    expect(documents.map((doc) => doc.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Secret', 'Service']);
    expect(container.args).toEqual(['serve']);
  });

  it('gives the gateway a valid configuration, its htpasswd file and policy from the Secret and ConfigMap', () => {
    const config = podConfig();
    expect(backing(config.auth.htpasswd).volume.secret).toBeDefined();
    fileText(config.auth.htpasswd);
    expect(() => parsePolicy(fileText(config.authz.policyFile), config.authz.policyFile)).not.toThrow();
  });

  it('writes only to a writable persistent volume (the root file system is read-only)', () => {
    const config = podConfig();
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
    for (const written of [config.tls.selfSignedDir, config.session.keyFile, config.session.revocationsFile, config.tokens.file]) {
      const { volume, mount } = backing(posix.resolve(imageWorkdir, written) + (written === config.tls.selfSignedDir ? '/mlgate.crt' : ''));
      expect(mount.readOnly ?? false, written).toBe(false);
      expect(volume.persistentVolumeClaim, written).toBeDefined();
      find('PersistentVolumeClaim', volume.persistentVolumeClaim!.claimName);
    }
    // The image's user, and a group that may write the volume.
    expect(imageUser).toBe('node');
    expect(pod.securityContext.runAsUser).toBe(1000);
    expect(pod.securityContext.fsGroup).toBe(1000);
  });

  it('probes the gateway\'s health and readiness routes, which need no credentials, on its port and scheme', () => {
    const config = podConfig();
    const port = (ref: string | number) => (typeof ref === 'number' ? ref : container.ports.find((p) => p.name === ref)?.containerPort);
    expect(container.ports.map((p) => p.containerPort)).toEqual([config.port]);
    const probes = [container.startupProbe, container.livenessProbe, container.readinessProbe].filter((probe) => probe !== undefined);
    for (const { httpGet } of probes) {
      expect(PUBLIC_CONTROL_PATHS.has(httpGet.path), httpGet.path).toBe(true);
      expect(port(httpGet.port)).toBe(config.port);
      expect(httpGet.scheme ?? 'HTTP').toBe(config.tls.enabled ? 'HTTPS' : 'HTTP');
    }
    expect(container.livenessProbe.httpGet.path).toBe('/-/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/-/readyz');
  });

  it('serves the pods through the Service, and stops them gracefully', () => {
    const service = find('Service').spec as { selector: Record<string, string>; ports: { port: number; targetPort: string | number }[] };
    expect(deployment.template.metadata.labels).toMatchObject(service.selector);
    expect(deployment.template.metadata.labels).toMatchObject(deployment.selector.matchLabels);
    const target = service.ports[0]!.targetPort;
    expect(typeof target === 'number' ? target : container.ports.find((p) => p.name === target)?.containerPort).toBe(podConfig().port);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(DEFAULTS.shutdownGrace);
    expect(deployment.replicas).toBe(1); // tokens, session key and revocations live in one ReadWriteOnce volume
  });
});

/** The upstreams a configuration forwards MLflow's API to, as origins (one URL, or a list of them). */
function upstreamOrigins(config: Config): string[] {
  return config.upstream.map((server) => new URL(server).origin);
}

describe('deploy/scale-out/docker-compose.yml', () => {
  const dir = join(PROJECT_ROOT, 'deploy', 'scale-out');
  const text = read('deploy/scale-out/docker-compose.yml');
  type Healthy = { condition: string };
  type Service = {
    build?: string | { context: string; dockerfile?: string }; image?: string; command?: string; ports?: string[];
    environment?: Record<string, string>; volumes?: string[]; depends_on?: string[] | Record<string, Healthy>;
    networks?: string[] | Record<string, { ipv4_address?: string } | null>; stop_grace_period?: string; healthcheck?: unknown;
  };
  type Compose = { services: Record<string, Service>; networks: Record<string, { ipam?: { config: { subnet: string }[] } } | null>; volumes: Record<string, unknown> };
  /** What `.env` would hold: every variable the file requires. */
  const dotEnv = { MLGATE_SESSION_SECRET: 's'.repeat(48), REDIS_PASSWORD: 'redis-password-1', POSTGRES_PASSWORD: 'postgres1' };
  const compose = (env: Record<string, string> = dotEnv) => parse(interpolate(text, env), { merge: true }) as Compose;
  const { services, networks, volumes } = compose();
  const networksOf = (service: Service) => (Array.isArray(service.networks) ? service.networks : Object.keys(service.networks ?? {}));
  const dependsOn = (service: Service) => (Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((name) => [name, { condition: 'service_started' }])) : service.depends_on ?? {});
  const gateways = Object.entries(services).filter(([, service]) => service.image === 'mlgate');
  const mlflows = Object.entries(services).filter(([, service]) => service.command?.startsWith('mlflow server'));
  const option = (command: string, name: string) => new RegExp(`${name}[ =](\\S+)`).exec(command)?.[1];
  /** host path (relative to the file) of what a service mounts at a path in the container. */
  const bindSource = (service: Service, target: string) => service.volumes!.map((volume) => volume.split(':')).find(([, inside]) => inside === target)?.[0];
  const mounts = (service: Service) => service.volumes!.map((volume) => volume.split(':') as [string, string, string?]);

  /** The configuration a replica gets: its environment and the file mounted where MLGATE_CONFIG points. */
  function replicaConfig(service: Service): Config {
    const env = service.environment!;
    const file = bindSource(service, env[CONFIG_FILE_VARIABLE]!);
    expect(file, `${env[CONFIG_FILE_VARIABLE]} is mounted from the checkout`).toMatch(/^\.\//);
    return configFor({ ...env, [CONFIG_FILE_VARIABLE]: join(dir, file!) }, imageWorkdir);
  }

  it('runs two or more gateways from the checkout\'s image, and two or more MLflow servers', () => {
    expect(gateways.length).toBeGreaterThanOrEqual(2);
    expect(mlflows.length).toBeGreaterThanOrEqual(2);
    for (const [, gateway] of gateways) {
      const context = resolve(dir, typeof gateway.build === 'string' ? gateway.build : gateway.build!.context);
      expect(readFileSync(join(context, 'Dockerfile'), 'utf8')).toBe(read('Dockerfile'));
      expect(Number.parseInt(gateway.stop_grace_period!, 10) * 1000).toBeGreaterThan(DEFAULTS.shutdownGrace);
    }
  });

  it('configures every gateway with real variables into a valid configuration, with the same session secret', () => {
    const secrets = new Set<string | undefined>();
    for (const [name, gateway] of gateways) {
      expectKnownVariables(Object.keys(gateway.environment!), `${name} environment`);
      secrets.add(replicaConfig(gateway).session.secret);
    }
    expect([...secrets]).toEqual([dotEnv.MLGATE_SESSION_SECRET]);
    // Without it compose stops, rather than starting gateways that would each make a key of their own.
    expect(() => compose({ ...dotEnv, MLGATE_SESSION_SECRET: '' })).toThrow(/MLGATE_SESSION_SECRET/);
    // Every variable the file requires is in the example .env.
    const example = read('deploy/scale-out/env.example');
    for (const [, name] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):\?/g)) expect(example).toMatch(new RegExp(`^${name}=`, 'm'));
  });

  it('forwards to every MLflow server by its service name and port, on a network they share', () => {
    for (const [name, gateway] of gateways) {
      const origins = upstreamOrigins(replicaConfig(gateway));
      expect(origins.map((origin) => new URL(origin).hostname).sort(), name).toEqual(mlflows.map(([service]) => service).sort());
      for (const origin of origins) {
        const [, mlflow] = mlflows.find(([service]) => service === new URL(origin).hostname)!;
        expect(option(mlflow.command!, '--port')).toBe(new URL(origin).port);
        expect(option(mlflow.command!, '--host')).toBe('0.0.0.0');
        expect(networksOf(gateway).filter((network) => networksOf(mlflow).includes(network)).length).toBeGreaterThan(0);
      }
    }
  });

  it('runs the MLflow servers on one PostgreSQL database and one artifact store, started one after the other', () => {
    const stores = new Set(mlflows.map(([, mlflow]) => option(mlflow.command!, '--backend-store-uri')));
    expect(stores.size).toBe(1);
    const store = new URL([...stores][0]!);
    expect(store.protocol).toBe('postgresql:');
    const postgres = services[store.hostname]!;
    expect(postgres.image).toMatch(/^postgres:/);
    expect(store.pathname).toBe(`/${postgres.environment!.POSTGRES_DB}`);
    expect(decodeURIComponent(store.username)).toBe(postgres.environment!.POSTGRES_USER);
    expect(decodeURIComponent(store.password)).toBe(postgres.environment!.POSTGRES_PASSWORD);
    // The PostgreSQL driver the official image lacks is in the image they run.
    const built = mlflows.map(([, mlflow]) => mlflow.build).find(Boolean) as { context: string; dockerfile: string };
    expect(readFileSync(join(dir, built.context, built.dockerfile), 'utf8')).toMatch(/^RUN pip install .*psycopg2/m);
    for (const [, mlflow] of mlflows) expect(mlflow.image).toBe(mlflows[0]![1].image);
    // Artifacts: the same destination, on the same named volume.
    const destinations = mlflows.map(([, mlflow]) => option(mlflow.command!, '--artifacts-destination')!);
    expect(new Set(destinations).size).toBe(1);
    const artifactVolumes = new Set(mlflows.map(([, mlflow]) => mounts(mlflow).find(([, inside]) => destinations[0]!.startsWith(inside))?.[0]));
    expect(artifactVolumes.size).toBe(1);
    expect(Object.keys(volumes)).toContain([...artifactVolumes][0]);
    // Each start migrates the schema: every server after the first waits for the one before to be healthy.
    for (const [name, mlflow] of mlflows.slice(1)) {
      const waitsFor = Object.entries(dependsOn(mlflow)).filter(([other, { condition }]) => condition === 'service_healthy' && mlflows.some(([service]) => service === other));
      expect(waitsFor.length, name).toBeGreaterThan(0);
      expect(mlflows.find(([service]) => service === waitsFor[0]![0])![1].healthcheck).toBeDefined();
    }
  });

  it('shares state through the one Redis, with the password Redis asks for', () => {
    for (const [, gateway] of gateways) {
      const { redis } = replicaConfig(gateway).state;
      expect(redis).toBeDefined();
      const server = services[new URL(redis!.url).hostname]!;
      expect(server.image).toMatch(/^(redis|valkey)/);
      expect(option(server.command!, '--requirepass')).toBe(redis!.password);
      expect(networksOf(gateway).filter((network) => networksOf(server).includes(network)).length).toBeGreaterThan(0);
    }
  });

  it('gives every gateway the same htpasswd file, policy and configuration', () => {
    const configs = gateways.map(([, gateway]) => replicaConfig(gateway));
    const shared = (path: string) => new Set(gateways.map(([, gateway]) => {
      const mount = mounts(gateway).filter(([, inside]) => path.startsWith(`${inside}/`) || path === inside).sort((a, b) => b[1].length - a[1].length)[0];
      expect(mount, `${path} is on no volume`).toBeDefined();
      return `${mount![0]}:${mount![1]}`;
    }));
    const htpasswd = posix.resolve(imageWorkdir, configs[0]!.auth.htpasswd);
    expect(shared(htpasswd).size).toBe(1);
    expect(Object.keys(volumes)).toContain([...shared(htpasswd)][0]!.split(':')[0]);
    expect(shared(configs[0]!.authz.policyFile).size).toBe(1);
    expect(() => parsePolicy(readFileSync(join(dir, bindSource(gateways[0]![1], configs[0]!.authz.policyFile)!), 'utf8'), 'policy.yaml')).not.toThrow();
    for (const config of configs) expect([config.auth.htpasswd, config.authz.policyFile]).toEqual([configs[0]!.auth.htpasswd, configs[0]!.authz.policyFile]);
    // Only the first gateway may make the htpasswd file on first start: the others wait until it is healthy.
    for (const [name, gateway] of gateways.slice(1)) expect(dependsOn(gateway)[gateways[0]![0]]?.condition, name).toBe('service_healthy');
  });

  const nginxFound = !spawnSync('nginx', ['-v']).error && !spawnSync('openssl', ['version']).error;
  it.skipIf(!nginxFound)('its balancer configuration passes nginx -t (the gateways\' names as 127.0.0.1, which resolves here)', () => {
    const check = mkdtempSync(join(scratch, 'nginx-'));
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=balancer', '-keyout', join(check, 'tls.key'), '-out', join(check, 'tls.crt')], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const site = read('deploy/scale-out/nginx.conf').replace(/server mlgate-[a-z]+:/g, 'server 127.0.0.1:').replaceAll('/etc/nginx/tls/', `${check}/`);
    writeFileSync(join(check, 'site.conf'), site);
    writeFileSync(join(check, 'nginx.conf'), `error_log ${check}/error.log;\npid ${check}/nginx.pid;\nevents {}\nhttp { include ${check}/site.conf; }\n`);
    const test = spawnSync('nginx', ['-t', '-p', check, '-c', join(check, 'nginx.conf')], { encoding: 'utf8', timeout: 30_000 });
    expect(test.status, test.stderr).toBe(0);
  });

  it('puts the balancer, the only published port, in front of every gateway, and the gateways trust it alone', () => {
    const published = Object.entries(services).filter(([, service]) => service.ports?.length);
    expect(published.map(([name]) => name)).toEqual(['balancer']);
    const balancer = services.balancer!;
    expect(balancer.image).toMatch(/^nginx:/);
    const nginx = readFileSync(join(dir, bindSource(balancer, '/etc/nginx/conf.d/default.conf')!), 'utf8').replace(/#.*$/gm, '');
    const config = replicaConfig(gateways[0]![1]);
    const upstream = /upstream\s+(\S+)\s*\{([^}]*)\}/.exec(nginx)!;
    const servers = [...upstream[2]!.matchAll(/^\s*server\s+([^\s;]+)/gm)].map((match) => match[1]);
    expect(servers.sort()).toEqual(gateways.map(([name]) => `${name}:${config.port}`).sort());
    expect(nginx).toContain(`proxy_pass ${config.tls.enabled ? 'https' : 'http'}://${upstream[1]};`);
    // The client's address replaces whatever X-Forwarded-For the client sent.
    expect(nginx).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
    expect(nginx).toMatch(/proxy_set_header X-Forwarded-Proto https;/);
    // Its address on the network it shares with the gateways is the one, and only, trusted proxy.
    const edge = Object.entries(balancer.networks as Record<string, { ipv4_address: string }>);
    expect(edge).toHaveLength(1);
    const [network, { ipv4_address: address }] = edge[0]!;
    const subnet = networks[network]!.ipam!.config[0]!.subnet;
    expect(address.startsWith(subnet.split('/')[0]!.replace(/\.0$/, '.'))).toBe(true);
    for (const [name, gateway] of gateways) {
      expect(replicaConfig(gateway).proxy.trustedProxies, name).toEqual([address]);
      expect(networksOf(gateway), name).toContain(network);
      expect(gateway.ports, name).toBeUndefined();
    }
    // Nothing else on that network could pose as the balancer with a forged header.
    const onEdge = Object.entries(services).filter(([, service]) => networksOf(service).includes(network)).map(([name]) => name);
    expect(onEdge.sort()).toEqual(['balancer', ...gateways.map(([name]) => name)].sort());
  });
});

describe('deploy/kubernetes/mlgate-scale-out.yaml', () => {
  type Probe = { httpGet: { path: string; port: string | number; scheme?: string } };
  type Mount = { name: string; mountPath: string; readOnly?: boolean };
  type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
  type Container = {
    env: EnvVar[]; args?: string[]; ports: { name?: string; containerPort: number }[]; volumeMounts: Mount[];
    startupProbe?: Probe; livenessProbe: Probe; readinessProbe: Probe;
    securityContext: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  };
  type Volume = { name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: object; persistentVolumeClaim?: object };
  type Resource = { kind: string; type?: string; metadata: { name: string }; data?: Record<string, string>; stringData?: Record<string, string>; spec?: Record<string, unknown> };
  const documents = parseAllDocuments(read('deploy/kubernetes/mlgate-scale-out.yaml')).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Resource;
  });
  const find = (kind: string, name?: string) => {
    const found = documents.find((doc) => doc.kind === kind && (name === undefined || doc.metadata.name === name));
    expect(found, `${kind} ${name ?? ''}`).toBeDefined();
    return found!;
  };
  const deployment = find('Deployment').spec as {
    replicas: number; selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[]; volumes: Volume[]; terminationGracePeriodSeconds: number; securityContext: { runAsUser: number; runAsNonRoot?: boolean; fsGroup?: number } } };
  };
  const pod = deployment.template.spec;
  const container = pod.containers[0]!;
  /** The Secret key behind each variable, or its literal value. */
  const secretRef = (name: string) => container.env.find((variable) => variable.name === name)?.valueFrom?.secretKeyRef;
  const secretValue = (ref: { name: string; key: string }) => find('Secret', ref.name).stringData?.[ref.key];

  function backing(path: string): { volume: Volume; mount: Mount; key: string } {
    const mount = container.volumeMounts.filter((m) => path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    expect(mount, `${path} is on no volume`).toBeDefined();
    const volume = pod.volumes.find((v) => v.name === mount!.name)!;
    expect(volume, mount!.name).toBeDefined();
    return { volume, mount: mount!, key: path.slice(mount!.mountPath.length + 1) };
  }
  function fileText(path: string): string {
    const { volume, key } = backing(path);
    const source = volume.configMap ? find('ConfigMap', volume.configMap.name).data : volume.secret ? find('Secret', volume.secret.secretName).stringData : undefined;
    expect(source?.[key], `${path}: no key ${key} in its ConfigMap or Secret`).toBeDefined();
    return source![key]!;
  }

  /**
   * The configuration every pod gets: the literal variables, those from Secrets with the values an
   * operator put in (`secrets`, by Secret key), and the ConfigMap's file at MLGATE_CONFIG.
   */
  function podConfig(secrets: Record<string, string> = { 'session-secret': 's'.repeat(48), 'redis-password': 'redis-password-1' }): Config {
    const env: Record<string, string> = {};
    for (const variable of container.env) {
      const ref = variable.valueFrom?.secretKeyRef;
      if (ref) expect(secretValue(ref), `${variable.name}: key ${ref.key} of Secret ${ref.name}`).toBeDefined();
      env[variable.name] = ref ? secrets[ref.key] ?? secretValue(ref)! : variable.value!;
    }
    expectKnownVariables(Object.keys(env), 'env');
    const copy = join(scratch, 'k8s-scale-out.yaml');
    writeFileSync(copy, fileText(env[CONFIG_FILE_VARIABLE]!));
    return configFor({ ...env, [CONFIG_FILE_VARIABLE]: copy }, imageWorkdir);
  }

  it('has the configuration, its Secrets, the Deployment, its disruption budget and Service', () => {
    expect([...new Set(documents.map((doc) => doc.kind))].sort()).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Secret', 'Service']);
    expect(container.args).toEqual(['serve']);
    expect(deployment.replicas).toBeGreaterThanOrEqual(2);
  });

  it('gives every replica one valid configuration, and the same session secret and Redis password from a Secret', () => {
    const config = podConfig();
    // One pod template, so every replica gets these same references: the secret is never a per-pod key file.
    expect(secretRef('MLGATE_SESSION_SECRET')).toBeDefined();
    expect(config.session.secret).toBe('s'.repeat(48));
    expect(secretRef('MLGATE_STATE_REDIS_PASSWORD')).toBeDefined();
    expect(config.state.redis?.password).toBe('redis-password-1');
    expect(new URL(config.state.redis!.url).hostname).toBe('redis');
    // The placeholder as shipped is refused, so nobody runs with a secret printed in this file.
    expect(() => podConfig({})).toThrow(/session\.secret/);
    expect(config.upstream.length).toBeGreaterThanOrEqual(2);
    expect(config.proxy.healthCheck.path).toBe('/health');
  });

  it('reads the users, policy and certificate every replica shares from Secrets and the ConfigMap', () => {
    const config = podConfig();
    expect(backing(config.auth.htpasswd).volume.secret).toBeDefined();
    fileText(config.auth.htpasswd);
    expect(() => parsePolicy(fileText(config.authz.policyFile), config.authz.policyFile)).not.toThrow();
    // One certificate for all: clients pin it, and any replica may answer them.
    for (const file of [config.tls.cert!, config.tls.key!]) {
      const { volume } = backing(file);
      expect(find('Secret', volume.secret!.secretName).type).toBe('kubernetes.io/tls');
      fileText(file);
    }
  });

  it('writes only to its own writable volume (the root file system is read-only), as the image\'s user', () => {
    const config = podConfig();
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    for (const written of [config.session.revocationsFile, config.tokens.file, config.oidc.refreshTokensFile]) {
      const { volume, mount } = backing(posix.resolve(imageWorkdir, written));
      expect(mount.readOnly ?? false, written).toBe(false);
      expect(volume.emptyDir ?? volume.persistentVolumeClaim, written).toBeDefined();
    }
    expect(imageUser).toBe('node');
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(1000);
    expect(pod.securityContext.fsGroup).toBe(1000);
  });

  it('probes the gateway\'s health and readiness routes, which need no credentials, on its port and scheme', () => {
    const config = podConfig();
    const port = (ref: string | number) => (typeof ref === 'number' ? ref : container.ports.find((p) => p.name === ref)?.containerPort);
    expect(container.ports.map((p) => p.containerPort)).toEqual([config.port]);
    for (const { httpGet } of [container.startupProbe, container.livenessProbe, container.readinessProbe].filter((probe) => probe !== undefined)) {
      expect(PUBLIC_CONTROL_PATHS.has(httpGet.path), httpGet.path).toBe(true);
      expect(port(httpGet.port)).toBe(config.port);
      expect(httpGet.scheme ?? 'HTTP').toBe(config.tls.enabled ? 'HTTPS' : 'HTTP');
    }
    expect(container.livenessProbe.httpGet.path).toBe('/-/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/-/readyz');
  });

  it('keeps a replica through disruptions and updates, serves them through the Service, stops them gracefully', () => {
    const labels = deployment.template.metadata.labels;
    const budget = find('PodDisruptionBudget').spec as { minAvailable?: number; maxUnavailable?: number; selector: { matchLabels: Record<string, string> } };
    expect(labels).toMatchObject(budget.selector.matchLabels);
    expect(budget.minAvailable ?? deployment.replicas - budget.maxUnavailable!).toBeGreaterThanOrEqual(1);
    expect(budget.minAvailable ?? 0).toBeLessThan(deployment.replicas); // else no node could ever be drained
    const strategy = (find('Deployment').spec as { strategy: { type: string; rollingUpdate: { maxUnavailable: number } } }).strategy;
    expect([strategy.type, strategy.rollingUpdate.maxUnavailable]).toEqual(['RollingUpdate', 0]);
    const service = find('Service').spec as { selector: Record<string, string>; ports: { port: number; targetPort: string | number }[] };
    expect(labels).toMatchObject(service.selector);
    expect(labels).toMatchObject(deployment.selector.matchLabels);
    const target = service.ports[0]!.targetPort;
    expect(typeof target === 'number' ? target : container.ports.find((p) => p.name === target)?.containerPort).toBe(podConfig().port);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(DEFAULTS.shutdownGrace);
  });
});

describe('the probes of deploy/, asked of a running gateway', () => {
  const fixture = gatewayWithUpstream();
  const probePaths = ['deploy/kubernetes/mlgate.yaml', 'deploy/kubernetes/mlgate-scale-out.yaml'].flatMap((file) => parseAllDocuments(read(file))
    .map((doc) => doc.toJS() as { kind: string; spec?: { template: { spec: { containers: Record<string, { httpGet?: { path: string } } | unknown>[] } } } })
    .filter((doc) => doc.kind === 'Deployment')
    .flatMap((doc) => doc.spec!.template.spec.containers.flatMap((container) => ['startupProbe', 'livenessProbe', 'readinessProbe']
      .flatMap((probe) => (container[probe] as { httpGet?: { path: string } } | undefined)?.httpGet?.path ?? []))));

  it('answers each probe path with 200 and no credentials, as a probe needs', async () => {
    expect(probePaths.length).toBeGreaterThanOrEqual(6);
    for (const path of new Set(probePaths)) {
      const res = await fixture.gw.request(path);
      expect([path, res.status, res.headers['www-authenticate']]).toEqual([path, 200, undefined]);
    }
    // A route that needs credentials would not do: the probe would fail on a healthy pod.
    expect((await fixture.gw.request('/-/whoami')).status).toBe(401);
  });
});

describe('without the dev dependencies (npm ci --omit=dev)', () => {
  /** A copy of the package's bin/ and package.json, with no node_modules: no TypeScript, no tsx. */
  function install(files: { src?: boolean; dist?: boolean }): string {
    const dir = mkdtempSync(join(scratch, 'install-'));
    cpSync(join(PROJECT_ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
    cpSync(join(PROJECT_ROOT, 'package.json'), join(dir, 'package.json'));
    if (files.src) {
      mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
      writeFileSync(join(dir, 'src', 'cli', 'main.ts'), 'export {};\n');
    }
    if (files.dist) {
      mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
      writeFileSync(join(dir, 'dist', 'cli', 'main.js'), 'process.stdout.write(`built ${process.argv.slice(2).join(" ")}`);\n');
      writeFileSync(join(dir, 'dist', '.tsbuildinfo'), '{}');
    }
    return dir;
  }
  const run = (dir: string, script: string, ...args: string[]) => spawnSync(process.execPath, [join(dir, 'bin', script), ...args], { cwd: scratch, encoding: 'utf8', env: { PATH: process.env.PATH } });
  const past = new Date(Date.now() - 3_600_000);

  it('npm start\'s build step passes an up-to-date build without a word', () => {
    const dir = install({ src: true, dist: true });
    for (const path of ['src/cli/main.ts', 'src/cli', 'src', 'package.json']) utimesSync(join(dir, path), past, past);
    const step = run(dir, 'build-if-stale.js');
    expect([step.status, step.stderr]).toEqual([0, '']);
  });

  it('runs a build older than the sources when it cannot compile, and says how to rebuild', () => {
    const dir = install({ src: true, dist: true });
    utimesSync(join(dir, 'dist', '.tsbuildinfo'), past, past);
    const step = run(dir, 'build-if-stale.js');
    expect(step.status).toBe(0);
    expect(step.stderr).toContain('npm ci && npm run build');
  });

  it('without a build: npm start stops and says how to make one', () => {
    const step = run(install({ src: true }), 'build-if-stale.js');
    expect(step.status).toBe(1);
    expect(step.stderr).toMatch(/no build in dist\/.*npm ci && npm run build/);
  });

  it('bin/mlgate.js runs the build, and without one (and no tsx) says how to make one', () => {
    const built = run(install({ dist: true }), 'mlgate.js', '--help');
    expect([built.status, built.stdout]).toEqual([0, 'built --help']);
    const none = run(install({ src: true }), 'mlgate.js', '--help');
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^mlgate: no build in .*dist; .*npm ci && npm run build/);
  });

  it('tsx, TypeScript and every other build tool are dev dependencies', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    for (const tool of ['tsx', 'typescript']) {
      expect(pkg.dependencies).not.toHaveProperty(tool);
      expect(pkg.devDependencies).toHaveProperty(tool);
    }
  });
});
