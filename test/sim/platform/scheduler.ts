import { startKeyIssuer } from '../../fixtures/key-issuer.js';

/**
 * Google's ID tokens on loopback: a signing key of the simulation's own, its public half served
 * as a JWKS (Google's is https://www.googleapis.com/oauth2/v3/certs), and the tokens Google
 * mints for a service account: RS256, iss https://accounts.google.com, the audience asked for,
 * email and email_verified (https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload).
 */
export interface GoogleIdTokens {
  /** Where the function finds the signing keys: give it as CLAUDERUN_GOOGLE_JWKS_URL. */
  jwksUrl: string;
  /** An ID token of service account `email` for `audience`, valid for an hour as Google's are. */
  idToken(audience: string, email: string): Promise<string>;
  close(): Promise<void>;
}

const TOKEN_LIFETIME_SECONDS = 3600;

export async function startGoogleIdTokens(): Promise<GoogleIdTokens> {
  const keys = await startKeyIssuer();
  // A service account's numeric id stands in `sub` and `azp`, as in Google's tokens.
  const accountIds = new Map<string, string>();
  const idOf = (email: string) => {
    let id = accountIds.get(email);
    if (id === undefined) accountIds.set(email, (id = String(100_000_000_000_000_000_000n + BigInt(accountIds.size + 1))));
    return id;
  };
  return {
    jwksUrl: keys.jwksUrl,
    idToken: (audience, email) => {
      const now = Math.floor(Date.now() / 1000);
      const id = idOf(email);
      return keys.sign({
        iss: 'https://accounts.google.com',
        aud: audience,
        sub: id,
        azp: id,
        email,
        email_verified: true,
        iat: now,
        exp: now + TOKEN_LIFETIME_SECONDS,
      });
    },
    close: () => keys.close(),
  };
}

export interface SchedulerJob {
  /** The HTTP target: the URL called, with POST. */
  url: string;
  /** The OIDC token's audience; Cloud Scheduler's default is the target URL itself. */
  audience: string;
  /** The service account whose ID token goes with each call. */
  account: string;
  /** 0: paused, run only by runNow. */
  everySeconds: number;
}

export interface FakeScheduler {
  /** Each attempt's HTTP status (0 when the call itself failed), oldest first. */
  readonly attempts: number[];
  /** Runs the job now, as "Force run" does; resolves with the status. */
  runNow(): Promise<number>;
  close(): void;
}

/**
 * Cloud Scheduler's HTTP target with OIDC authentication: every `everySeconds` a POST to the
 * target with `Authorization: Bearer <ID token>` of the job's service account
 * (https://cloud.google.com/scheduler/docs/http-target-auth#using-oidc). Cron runs once a minute
 * at most; tests run it more often.
 */
export function startScheduler(tokens: GoogleIdTokens, job: SchedulerJob, log: (message: string) => void): FakeScheduler {
  const attempts: number[] = [];
  const runNow = async (): Promise<number> => {
    let status = 0;
    try {
      const response = await fetch(job.url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await tokens.idToken(job.audience, job.account)}`,
          'user-agent': 'Google-Cloud-Scheduler',
          'content-length': '0',
        },
        signal: AbortSignal.timeout(180_000),
      });
      status = response.status;
      await response.arrayBuffer();
    } catch (error) {
      log(`scheduler: POST ${job.url} failed: ${(error as Error).message}`);
    }
    attempts.push(status);
    if (attempts.length > 1000) attempts.shift();
    return status;
  };
  let running = false;
  // A paused job (0 s) runs only when forced.
  const timer =
    job.everySeconds > 0
      ? setInterval(() => {
          // One attempt at a time, as a job whose attempt is still running is not started again.
          if (running) return;
          running = true;
          void runNow().finally(() => (running = false));
        }, job.everySeconds * 1000)
      : undefined;
  return { attempts, runNow, close: () => clearInterval(timer) };
}
