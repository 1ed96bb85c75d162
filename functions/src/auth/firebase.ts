import type { IncomingHttpHeaders } from 'node:http';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JWSHeaderParameters, JWTPayload, FlattenedJWSInput } from 'jose';
import type { Authenticator, AuthResult } from './authenticator.js';

/** Google's published keys for Firebase Auth / Identity Platform ID tokens. */
export const FIREBASE_JWKS_URL = 'https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com';

export interface FirebaseAuthenticatorOptions {
  projectId: string;
  jwksUrl?: string;
  clockToleranceSeconds?: number;
  /** Gets operational notes (never tokens or claims). */
  log?: (message: string) => void;
}

const UNAVAILABLE = 'cannot check ID tokens right now';
const BEARER = /^Bearer +(\S+) *$/i;

/** Thrown by our key resolver when the key set itself could not be fetched or used. */
class KeySetUnavailable extends Error {
  constructor(readonly reason: string) {
    super('key set unavailable');
  }
}
/** Thrown by our key resolver when the token names no key. */
class MissingKeyId extends Error {}

function describe(err: unknown): string {
  if (err instanceof errors.JOSEError) return err.code;
  if (err instanceof Error) {
    // e.g. fetch's "TypeError (connect ECONNREFUSED 127.0.0.1:443)": network detail, never token material.
    return err.cause instanceof Error ? `${err.name} (${err.cause.message})` : err.name;
  }
  return typeof err;
}

/** Verifies Firebase Auth / Identity Platform ID tokens; the user id is the token's `sub`. */
export class FirebaseAuthenticator implements Authenticator {
  private readonly projectId: string;
  private readonly jwksUrl: string;
  private readonly clockTolerance: number;
  private readonly log: (message: string) => void;
  private readonly remoteKeys: ReturnType<typeof createRemoteJWKSet>;

  constructor(options: FirebaseAuthenticatorOptions) {
    if (options.projectId === '') throw new Error('FirebaseAuthenticator needs a projectId');
    this.projectId = options.projectId;
    this.jwksUrl = options.jwksUrl ?? FIREBASE_JWKS_URL;
    this.clockTolerance = options.clockToleranceSeconds ?? 5;
    this.log = options.log ?? (() => {});
    this.remoteKeys = createRemoteJWKSet(new URL(this.jwksUrl));
  }

  /** Resolves the verification key, telling "the key set is unreachable" apart from "the token names an unknown key". */
  private readonly keys = async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    if (typeof header.kid !== 'string' || header.kid === '') throw new MissingKeyId();
    try {
      return await this.remoteKeys(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) throw err;
      throw new KeySetUnavailable(describe(err));
    }
  };

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthResult> {
    const token = BEARER.exec(headers.authorization ?? '')?.[1];
    if (token === undefined) return { ok: false, message: 'missing bearer token' };

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: `https://securetoken.google.com/${this.projectId}`,
        audience: this.projectId,
        algorithms: ['RS256'],
        clockTolerance: this.clockTolerance,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (err) {
      return { ok: false, message: this.explain(err) };
    }

    const now = Math.floor(Date.now() / 1000) + this.clockTolerance;
    const { sub, iat, auth_time: authTime } = payload;
    if (typeof sub !== 'string' || sub === '') return { ok: false, message: 'the ID token has no subject (sub)' };
    if (sub.length > 128) return { ok: false, message: 'the ID token subject (sub) is longer than 128 characters' };
    if (typeof iat !== 'number' || iat > now) return { ok: false, message: 'the ID token was issued in the future (iat)' };
    if (typeof authTime !== 'number') return { ok: false, message: 'the ID token has no authentication time (auth_time)' };
    if (authTime > now) return { ok: false, message: 'the ID token authentication time is in the future (auth_time)' };
    return { ok: true, userId: sub };
  }

  private explain(err: unknown): string {
    if (err instanceof KeySetUnavailable) {
      this.log(`firebase auth: cannot fetch the ID token key set from ${this.jwksUrl}: ${err.reason}`);
      return UNAVAILABLE;
    }
    if (err instanceof MissingKeyId) return 'the ID token has no key id (kid) header';
    if (err instanceof errors.JWTExpired) return 'the ID token has expired';
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === 'aud') return 'the ID token is for another project (audience)';
      if (err.claim === 'iss') return 'the ID token was not issued by Firebase for this project (issuer)';
      if (err.claim === 'nbf') return 'the ID token is not valid yet (nbf)';
      if (err.reason === 'missing') return `the ID token has no "${err.claim}" claim`;
      return `the ID token "${err.claim}" claim is not valid`;
    }
    if (err instanceof errors.JOSEAlgNotAllowed) return 'the ID token must be signed with RS256';
    if (err instanceof errors.JWSSignatureVerificationFailed) return "the ID token's signature is not valid";
    if (err instanceof errors.JWKSNoMatchingKey) return 'the ID token was signed with a key Firebase does not publish (kid)';
    // JWSInvalid, JWTInvalid and any other JOSE complaint about the token's shape.
    if (err instanceof errors.JOSEError) return 'the ID token is malformed';
    this.log(`firebase auth: unexpected error verifying an ID token: ${describe(err)}`);
    return 'the ID token is malformed';
  }
}
