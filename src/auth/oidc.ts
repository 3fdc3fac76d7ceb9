// OpenID Connect sign-in with openid-client: discovery of each provider (oidc.providers[]) on first
// use, the authorization request (code flow with PKCE, state and nonce), and the callback's checks
// (state, the code exchanged once, the ID token's signature, issuer, audience, nonce, expiry within
// clockTolerance). What the provider says about the user becomes a name and groups here, with the
// configured restrictions and the collision rule (docs/oidc.md). No protocol code of our own.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, customFetch as joseCustomFetch, decodeJwt, jwtVerify, type FetchImplementation, type JWTPayload } from 'jose';
import { boundedCache } from '../state/bounded-cache.ts';
import * as client from 'openid-client';
import { PUBLIC_KEY_ALGORITHMS, type Config, type OidcProviderConfig } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { externalName, groupsFrom, claimAt } from './external-names.ts';
import type { BearerVerdict, Principal } from './principal.ts';

/** What a sign-in in progress needs to remember between the redirect and the callback (kept in a signed cookie). */
export interface SignInFlow {
  provider: string;
  state: string;
  nonce: string;
  verifier: string;
  redirectUri: string;
  next: string;
}

/** A sign-in the gateway refuses: shown as a page with this status, title and text, and logged with `detail`. */
interface SignInRefusal {
  ok: false;
  status: 400 | 401 | 403 | 502;
  title: string;
  message: string;
  detail: string;
}

type SignInResult = { ok: true; user: string; groups: string[]; subject: string; refreshToken?: string; refreshExpiresIn?: number } | SignInRefusal;

/**
 * A refresh at the interval: the user's name and groups now (the sign-in's restrictions applied),
 * the provider refusing (invalid_grant, or the user no longer passes), or no answer (keep everything;
 * a rotated refresh token that came with an unusable answer is still handed back).
 */
export type RefreshResult =
  | { kind: 'ok'; user: string; groups: string[]; refreshToken?: string; refreshExpiresIn?: number }
  | { kind: 'refused'; detail: string }
  | { kind: 'unreachable'; detail: string; refreshToken?: string };

interface OidcOptions {
  /** Whether a name is an htpasswd user's (the collision rule). */
  htpasswdHas(user: string): boolean;
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

/** One configured provider: its discovered configuration (fetched once, again after a failure). */
export class OidcProvider {
  private discovered: Promise<client.Configuration> | undefined;
  private readonly fetchImpl: client.CustomFetch | undefined;
  private readonly secret: string | undefined;
  private keySet: ReturnType<typeof createRemoteJWKSet> | undefined;
  /** Bearer tokens verified lately, under their SHA-256, until their exp or a minute, whichever is first. */
  private readonly verifiedTokens = boundedCache<string, { principal: Principal; until: number }>(10_000);

  constructor(readonly settings: OidcProviderConfig, private readonly options: OidcOptions) {
    this.fetchImpl = settings.ca !== undefined ? fetchTrusting(readCa(settings)) : undefined;
    if (settings.clientSecretEnv !== undefined) {
      this.secret = options.env[settings.clientSecretEnv];
      if (!this.secret) throw new Error(`oidc.providers (${settings.name}): clientSecretEnv names ${settings.clientSecretEnv}, which is not set in the environment`);
    }
  }

  get name(): string {
    return this.settings.name;
  }

  get label(): string {
    return this.settings.label ?? this.settings.name;
  }

  /** The provider's metadata and this client, discovered on first use (a provider down at start-up is no start-up failure). */
  configuration(): Promise<client.Configuration> {
    this.discovered ??= this.discover().catch((err: unknown) => {
      this.discovered = undefined;
      throw err;
    });
    return this.discovered;
  }

  private async discover(): Promise<client.Configuration> {
    const { issuer, clientId, timeout, clockTolerance } = this.settings;
    const auth = this.secret !== undefined ? client.ClientSecretPost(this.secret) : client.None();
    const options: client.DiscoveryRequestOptions = { timeout: Math.ceil(timeout / 1000) };
    if (this.fetchImpl) options[client.customFetch] = this.fetchImpl;
    if (new URL(issuer).protocol === 'http:') options.execute = [client.allowInsecureRequests]; // localhost only (schema)
    const metadata: Partial<client.ClientMetadata> = { [client.clockTolerance]: Math.ceil(clockTolerance / 1000) };
    const configuration = await client.discovery(new URL(issuer), clientId, metadata, auth, options);
    if (this.fetchImpl) configuration[client.customFetch] = this.fetchImpl;
    configuration.timeout = Math.ceil(timeout / 1000);
    // The ID token's signature is checked too (keys from jwks_uri, fetched again for an unknown kid
    // at most once a minute), not only trusted for having come over TLS.
    client.enableNonRepudiationChecks(configuration);
    return configuration;
  }

  /** Where to send the browser, and what to remember until it comes back. */
  async start(redirectUri: string, next: string): Promise<{ location: URL; flow: SignInFlow }> {
    const configuration = await this.configuration();
    const verifier = client.randomPKCECodeVerifier();
    const flow: SignInFlow = { provider: this.name, state: client.randomState(), nonce: client.randomNonce(), verifier, redirectUri, next };
    const location = client.buildAuthorizationUrl(configuration, {
      redirect_uri: redirectUri,
      scope: this.settings.scopes.join(' '),
      response_type: 'code',
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    return { location, flow };
  }

  /** The callback: every check openid-client makes, then the user's name, groups and the restrictions. */
  async finish(callbackUrl: URL, flow: SignInFlow): Promise<SignInResult> {
    let configuration: client.Configuration;
    try {
      configuration = await this.configuration();
    } catch (err) {
      return this.unreachable(err);
    }
    // The callback is checked as the exact redirect URI the request named, whatever Host the browser sent back.
    const current = new URL(flow.redirectUri);
    current.search = callbackUrl.search;
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: flow.verifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      return this.refusal(err);
    }
    let claims: Record<string, unknown> = { ...tokens.claims() };
    const { userClaim, groupsClaim } = this.settings;
    if ((claimAt(claims, userClaim) === undefined || claimAt(claims, groupsClaim) === undefined) && configuration.serverMetadata().userinfo_endpoint) {
      try {
        claims = { ...(await client.fetchUserInfo(configuration, tokens.access_token, String(claims.sub))), ...claims };
      } catch (err) {
        this.options.logger.warn({ provider: this.name, err }, 'could not read the user info endpoint; using the ID token alone');
      }
    }
    const admitted = this.admit(claims);
    return admitted.ok && tokens.refresh_token ? { ...admitted, refreshToken: tokens.refresh_token, ...refreshLifetime(tokens) } : admitted;
  }

  /** Uses a stored refresh token: the user's groups now, with the same restrictions as at sign-in. */
  async refresh(refreshToken: string, subject: string): Promise<RefreshResult> {
    let configuration: client.Configuration;
    let tokens: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
    try {
      configuration = await this.configuration();
      tokens = await client.refreshTokenGrant(configuration, refreshToken);
    } catch (err) {
      // Only the provider's own "no" ends anything; a timeout, a 5xx or a broken answer is retried.
      if (err instanceof client.ResponseBodyError && err.error === 'invalid_grant') return { kind: 'refused', detail: `invalid_grant${err.error_description ? `: ${err.error_description}` : ''}` };
      return { kind: 'unreachable', detail: describe(err) };
    }
    const rotated = tokens.refresh_token;
    let claims: Record<string, unknown> = { ...(tokens.claims() ?? {}) };
    const { userClaim, groupsClaim } = this.settings;
    if (claimAt(claims, userClaim) === undefined || claimAt(claims, groupsClaim) === undefined) {
      if (!configuration.serverMetadata().userinfo_endpoint) return { kind: 'unreachable', detail: 'the refreshed tokens name no groups and the provider has no userinfo endpoint', refreshToken: rotated };
      try {
        claims = { ...(await client.fetchUserInfo(configuration, tokens.access_token, typeof claims.sub === 'string' ? claims.sub : subject)), ...claims };
      } catch (err) {
        return { kind: 'unreachable', detail: `userinfo: ${describe(err)}`, refreshToken: rotated };
      }
    }
    if (claims.sub !== undefined && String(claims.sub) !== subject) return { kind: 'refused', detail: 'the provider answered for another subject' };
    const admitted = this.admit(claims);
    if (!admitted.ok) return { kind: 'refused', detail: admitted.detail };
    return { kind: 'ok', user: admitted.user, groups: admitted.groups, ...(rotated ? { refreshToken: rotated } : {}), ...refreshLifetime(tokens) };
  }

  /** The name, groups and restrictions, shared by sign-in and (with `bearer`) Bearer tokens. */
  admit(claims: Record<string, unknown>): SignInResult {
    const { userClaim, groupsClaim, namePrefix, allowedDomains, requiredGroups, sameUsersAsHtpasswd } = this.settings;
    const named = externalName(claimAt(claims, userClaim), namePrefix);
    if (!named.ok) return this.forbidden(`The identity provider sent no usable user name (${userClaim}: ${named.reason}).`, `${userClaim} claim: ${named.reason}`);
    const user = named.name;
    const groups = groupsFrom(claimAt(claims, groupsClaim));
    if (allowedDomains.length) {
      const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : '';
      const domain = email.slice(email.lastIndexOf('@') + 1);
      if (!email.includes('@') || claims.email_verified === false || !allowedDomains.includes(domain)) {
        return this.forbidden(`${user} may not use this service: only verified e-mail addresses at ${allowedDomains.join(', ')} are allowed.`, `e-mail ${email || '(none)'} not in allowedDomains`);
      }
    }
    if (requiredGroups.length && !requiredGroups.some((group) => groups.includes(group))) {
      return this.forbidden(`${user} may not use this service: it needs membership of ${requiredGroups.join(' or ')}.`, 'not in any of requiredGroups');
    }
    if (!sameUsersAsHtpasswd && this.options.htpasswdHas(user)) {
      return this.forbidden(
        `The name ${user} from ${this.label} is also a user of this gateway's password file, so signing in as them is refused. An administrator can give this provider a namePrefix, or set sameUsersAsHtpasswd if they are the same people (docs/oidc.md).`,
        'name collides with an htpasswd user',
      );
    }
    return { ok: true, user, groups, subject: String(claims.sub ?? '') };
  }

  /**
   * A JWT this provider issued, sent as a Bearer token (`bearer: true`): its signature (keys from
   * jwks_uri, fetched again for an unknown kid at most once per 30 s), iss, aud (bearerAudience, or
   * the client id), exp within clockTolerance; then the same name, groups and rules as sign-in.
   */
  async verifyBearer(token: string): Promise<BearerVerdict> {
    const cacheKey = createHash('sha256').update(token).digest('base64');
    const hit = this.verifiedTokens.get(cacheKey);
    if (hit && hit.until > Date.now()) return { ok: true, principal: hit.principal };
    let payload: JWTPayload;
    try {
      const keys = await this.bearerKeys();
      ({ payload } = await jwtVerify(token, keys, {
        algorithms: [...PUBLIC_KEY_ALGORITHMS],
        issuer: this.settings.issuer,
        audience: this.settings.bearerAudience.length ? this.settings.bearerAudience : this.settings.clientId,
        clockTolerance: Math.ceil(this.settings.clockTolerance / 1000),
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      return this.bearerRefusal(err);
    }
    const admitted = this.admit(payload);
    if (!admitted.ok) return { ok: false, reason: admitted.detail };
    const principal: Principal = Object.freeze({ user: admitted.user, method: 'bearer', groups: Object.freeze(admitted.groups), external: true, source: this.name });
    this.verifiedTokens.set(cacheKey, { principal, until: Math.min(payload.exp! * 1000, Date.now() + 60_000) });
    return { ok: true, principal };
  }

  private async bearerKeys(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (this.keySet) return this.keySet;
    const jwksUri = (await this.configuration()).serverMetadata().jwks_uri;
    if (!jwksUri) throw new Error(`${this.name} publishes no jwks_uri`);
    this.keySet = createRemoteJWKSet(new URL(jwksUri), {
      timeoutDuration: this.settings.timeout,
      ...(this.fetchImpl ? { [joseCustomFetch]: this.fetchImpl as unknown as FetchImplementation } : {}),
    });
    return this.keySet;
  }

  /** jose's error code -> the Bearer error_description (as for jwt.*); a provider that cannot be reached is a 503. */
  private bearerRefusal(err: unknown): BearerVerdict {
    const { code, claim } = err as { code?: string; claim?: string };
    switch (code) {
      case 'ERR_JWT_EXPIRED': return { ok: false, reason: 'the token has expired' };
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
        if (claim === 'aud') return { ok: false, reason: 'the token is meant for another audience (aud)' };
        if (claim === 'nbf') return { ok: false, reason: 'the token is not valid yet (nbf is in the future)' };
        return { ok: false, reason: `the token's ${claim} claim is missing or invalid` };
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return { ok: false, reason: 'the signature is invalid' };
      case 'ERR_JWKS_NO_MATCHING_KEY': return { ok: false, reason: 'no signing key matches the token (unknown kid)' };
      case 'ERR_JOSE_ALG_NOT_ALLOWED': return { ok: false, reason: 'the token\'s algorithm is not allowed' };
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID': return { ok: false, reason: 'the token is not a well-formed JWT' };
      default:
        this.options.logger.warn({ provider: this.name, err }, "cannot verify a bearer token: the identity provider's keys cannot be fetched");
        return { ok: false, unavailable: true, reason: "the identity provider's signing keys cannot be fetched right now; retry shortly" };
    }
  }

  /** The provider's sign-out page (RP-initiated logout), when it has one. */
  async endSessionUrl(postLogoutRedirectUri: string): Promise<string | undefined> {
    try {
      const configuration = await this.configuration();
      if (!configuration.serverMetadata().end_session_endpoint) return undefined;
      return client.buildEndSessionUrl(configuration, { client_id: this.settings.clientId, post_logout_redirect_uri: postLogoutRedirectUri }).href;
    } catch (err) {
      this.options.logger.warn({ provider: this.name, err }, "cannot reach the identity provider to end its session; only mlgate's session ended");
      return undefined;
    }
  }

  private forbidden(message: string, detail: string): SignInRefusal {
    return { ok: false, status: 403, title: 'Access denied', message, detail };
  }

  private unreachable(err: unknown): SignInRefusal {
    return { ok: false, status: 502, title: 'Identity provider unavailable', message: `${this.label} cannot be reached right now; try again in a moment.`, detail: describe(err) };
  }

  /** openid-client's error (code, never message text, decides) -> a page that says what went wrong. */
  private refusal(err: unknown): SignInRefusal {
    const failed = (message: string): SignInRefusal => ({ ok: false, status: 401, title: 'Sign-in failed', message, detail: describe(err) });
    if (err instanceof client.AuthorizationResponseError) {
      return failed(`${this.label} did not sign you in (${err.error}${err.error_description ? `: ${err.error_description}` : ''}).`);
    }
    if (err instanceof client.ResponseBodyError) {
      return failed(`${this.label} refused the sign-in (${err.error}${err.error_description ? `: ${err.error_description}` : ''}). A sign-in link works once; start again.`);
    }
    // openid-client's ClientError wraps oauth4webapi's error, whose cause names the claim.
    const { code, cause } = err as { code?: string; cause?: { claim?: string; cause?: { claim?: string } } };
    const claim = cause?.cause?.claim ?? cause?.claim;
    switch (code) {
      case 'OAUTH_JWT_CLAIM_COMPARISON_FAILED':
        if (claim === 'nonce') return failed("The provider's answer does not belong to this sign-in (nonce mismatch); start again.");
        if (claim === 'aud' || claim === 'azp') return failed(`The provider's ID token is meant for another application (${claim}).`);
        if (claim === 'iss') return failed("The ID token is from another issuer (iss).");
        return failed(`The ID token's ${claim ?? 'claims'} did not match.`);
      case 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED':
        return failed('The ID token has expired, or is not valid yet (check the clocks).');
      case 'OAUTH_KEY_SELECTION_FAILED':
        return failed('The ID token is signed with a key the provider does not publish (unknown kid).');
      case 'OAUTH_JWS_SIGNATURE_VERIFICATION_FAILED':
        return failed("The ID token's signature is invalid.");
      case 'OAUTH_INVALID_RESPONSE':
      case 'OAUTH_RESPONSE_IS_NOT_CONFORM':
      case 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED':
        return failed("The provider's answer failed a check (state, issuer or token); start again.");
      default:
        if (err instanceof TypeError || (code ?? '').startsWith('OAUTH_') === false) return { ...this.unreachable(err), detail: describe(err) };
        return failed("The provider's answer could not be accepted; start again.");
    }
  }
}

/** Every configured provider, by name; none when oidc.providers is empty. */
export function createOidcProviders(config: Config['oidc'], options: OidcOptions): Map<string, OidcProvider> {
  const providers = new Map(config.providers.map((settings) => [settings.name, new OidcProvider(settings, options)] as const));
  if (providers.size) options.logger.info({ providers: [...providers.keys()] }, 'OpenID Connect sign-in configured');
  return providers;
}

/**
 * Bearer JWTs for the providers with `bearer: true`: the token's (unverified) iss picks the provider,
 * which then verifies it. Undefined for a token no such provider issued (jwt.* may still take it).
 */
export function providerBearerTokens(providers: ReadonlyMap<string, OidcProvider>): ((token: string) => Promise<BearerVerdict> | undefined) | undefined {
  const byIssuer = new Map([...providers.values()].filter((provider) => provider.settings.bearer).map((provider) => [provider.settings.issuer.replace(/\/$/, ''), provider] as const));
  if (byIssuer.size === 0) return undefined;
  return (token) => {
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      return undefined;
    }
    return typeof issuer === 'string' ? byIssuer.get(issuer.replace(/\/$/, ''))?.verifyBearer(token) : undefined;
  };
}

/** Keycloak and others say how long the refresh token lasts (refresh_expires_in, seconds). */
function refreshLifetime(tokens: Record<string, unknown>): { refreshExpiresIn?: number } {
  const seconds = tokens.refresh_expires_in;
  return typeof seconds === 'number' && seconds > 0 ? { refreshExpiresIn: seconds } : {};
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: string }).code;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${code ? `${code} ` : ''}${err.message}${cause}`;
}

function readCa(settings: OidcProviderConfig): string {
  try {
    return readFileSync(settings.ca!, 'utf8');
  } catch (err) {
    throw new Error(`oidc.providers (${settings.name}).ca: cannot read ${settings.ca}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/**
 * fetch for openid-client that trusts one provider's CA (instead of the system's), with the TLS
 * checks left on. Redirects are not followed (openid-client asks for none).
 */
function fetchTrusting(ca: string): client.CustomFetch {
  return (url, options) => new Promise<Response>((resolve, reject) => {
    const target = new URL(url);
    const headers = Object.fromEntries(new Headers(options.headers as HeadersInit).entries());
    const body = options.body === undefined || options.body === null ? undefined : String(options.body);
    const request = (target.protocol === 'https:' ? https : http).request(target, { method: options.method, headers, ca, signal: options.signal ?? undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 502;
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value === undefined) continue;
          for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, one);
        }
        const nullBody = status === 204 || status === 304 || options.method === 'HEAD';
        resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: responseHeaders }));
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}
