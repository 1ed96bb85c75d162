import type { Identity, IdentitySource } from './api.js';
import { SignInEnded } from './errors.js';
import { type FirebaseIdentity, type FirebaseSettings, renewIdToken } from './firebase-sign-in.js';
import { hasExpired, type IdentityStore } from './identity-store.js';

/**
 * The kept identity, with a Firebase ID token renewed from its refresh token when it has expired
 * (a minute before it really does, see firebase-sign-in.ts) or when the API refuses it. Renewing
 * as a request is about to go, rather than on a timer, also covers a tab that slept past the
 * hour; an event stream already open keeps going, since the API checks the token as it connects.
 */
export class RenewingIdentities implements IdentitySource {
  /** The renewal under way: calls made meanwhile wait for it rather than renewing again. */
  private renewing: Promise<Identity | undefined> | undefined;

  constructor(
    private readonly store: IdentityStore,
    private readonly firebase: FirebaseSettings | null,
  ) {}

  async current(): Promise<Identity | undefined> {
    const identity = this.store.current();
    if (identity?.mode !== 'firebase' || !hasExpired(identity)) return identity;
    return this.renew(identity);
  }

  async afterRefusal(refused: Identity): Promise<Identity | undefined> {
    if (refused.mode !== 'firebase') return undefined;
    const kept = this.store.current();
    if (kept?.mode !== 'firebase' || kept.refreshToken !== refused.refreshToken) return undefined;
    // Renewed by another call since this one went out: that token is the one to try.
    if (kept.idToken !== refused.idToken && !hasExpired(kept)) return kept;
    return this.renew(kept);
  }

  private renew(identity: FirebaseIdentity): Promise<Identity | undefined> {
    this.renewing ??= this.exchange(identity).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async exchange(identity: FirebaseIdentity): Promise<Identity | undefined> {
    if (this.firebase === null) throw new SignInEnded('Your sign-in has expired. Sign in again.');
    const renewed = await renewIdToken(this.firebase, identity);
    const kept = this.store.current();
    // Signed out, or someone else signed in, while the renewal was on its way: it is not theirs.
    if (kept?.mode !== 'firebase' || kept.refreshToken !== identity.refreshToken) return kept;
    this.store.save(renewed);
    return renewed;
  }
}
