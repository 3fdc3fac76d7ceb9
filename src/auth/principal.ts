export type AuthMethod = 'basic' | 'bearer' | 'session' | 'client-cert';

/** Who made the request, as established by whichever authenticator accepted it. */
export interface Principal {
  user: string;
  method: AuthMethod;
  groups: readonly string[];
  /** Set when an identity provider's JWT or a client certificate vouched for the user, who need not be in the htpasswd file. */
  external?: boolean;
  /** The identity provider (oidc.providers[].name) that vouched for the user, when one did. */
  source?: string;
  /** The id of the mlgate API token (mlg_...) that authenticated the request, if one did. */
  token?: string;
}

/** What an API token or JWT check concludes; `reason` becomes the Bearer error_description. */
export type BearerVerdict =
  | { ok: true; principal: Principal }
  | { ok: false; reason: string; unavailable?: true };
