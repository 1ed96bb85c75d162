import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

/**
 * Verifies a Google-signed OpenID Connect ID token of one service account, as Cloud Scheduler
 * sends with an HTTP target's OIDC token (cloud.google.com/scheduler/docs/http-target-auth):
 * signed RS256 with Google's published keys, issued by accounts.google.com, for `audience`,
 * naming the account's email, verified (developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken).
 */
export interface GoogleIdTokenOptions {
  account: string;
  audience: string;
  jwksUrl: string;
  clockToleranceSeconds?: number;
}

/** Google's ID tokens name either issuer (developers.google.com/identity/openid-connect/openid-connect). */
const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];
const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]+)$/;

export class GoogleIdTokenVerifier {
  private readonly keys: ReturnType<typeof createRemoteJWKSet>;

  constructor(private readonly options: GoogleIdTokenOptions) {
    this.keys = createRemoteJWKSet(new URL(options.jwksUrl));
  }

  /** Undefined when the header carries the account's valid token; else why not (no token material). */
  async refusal(authorization: string | undefined): Promise<string | undefined> {
    const token = BEARER.exec(authorization ?? '')?.[1];
    if (token === undefined) return 'missing bearer token';
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: GOOGLE_ISSUERS,
        audience: this.options.audience,
        algorithms: ['RS256'],
        clockTolerance: this.options.clockToleranceSeconds ?? 5,
        requiredClaims: ['exp', 'iat', 'email'],
        // Google's ID tokens live an hour: jose refuses one older, or issued in the future (iat).
        maxTokenAge: '1h',
      });
      // ...and one meant to live longer is not Google's either.
      if (typeof payload.exp !== 'number' || typeof payload.iat !== 'number' || payload.exp - payload.iat > 3600 + 300)
        return "the ID token lives longer than Google's do (exp)";
      if (payload.email !== this.options.account || payload.email_verified !== true) return "the ID token is not the sweeper account's";
      return undefined;
    } catch (error) {
      if (error instanceof errors.JWTExpired) return 'the ID token has expired';
      if (error instanceof errors.JWTClaimValidationFailed) return `the ID token's "${error.claim}" claim is not valid`;
      if (error instanceof errors.JOSEError) return 'the ID token is not valid';
      throw error;
    }
  }
}
