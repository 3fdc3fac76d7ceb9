export type AuthMethod = 'basic' | 'bearer' | 'session';

/** Who made the request, as established by whichever authenticator accepted it. */
export interface Principal {
  user: string;
  method: AuthMethod;
  groups: readonly string[];
  /** Set when an identity provider's JWT vouched for the user, who need not be in the htpasswd file. */
  external?: boolean;
}

/** What an API token or JWT check concludes; `reason` becomes the Bearer error_description. */
export type BearerVerdict =
  | { ok: true; principal: Principal }
  | { ok: false; reason: string; unavailable?: true };
