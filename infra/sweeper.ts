import * as gcp from '@pulumi/gcp';
import type * as pulumi from '@pulumi/pulumi';
import { OPS_ROUTES } from '../functions/src/contract/routes.js';
import type { Names, Settings } from './config.js';

/**
 * The sweeper's clock: a Cloud Scheduler job that calls `POST <public URL>/ops/sweep` every
 * minute, so that turns whose sandbox died without a word are settled even when nobody reads
 * them (a function gets no CPU between requests, so it cannot keep a timer of its own).
 *
 * The call carries an OIDC token of the sweeper account, with the public URL as its audience
 * (cloud.google.com/scheduler/docs/http-target-auth): the route accepts that account and that
 * audience only (CLAUDERUN_SWEEPER_ACCOUNT, CLAUDERUN_SWEEPER_AUDIENCE). The account needs no
 * role: the public function admits every caller and checks the token itself.
 */

export const SWEEP_PATH = OPS_ROUTES.sweep;
/** Every minute (unix-cron), in UTC so that no daylight-saving change skips or doubles a run. */
export const SWEEP_SCHEDULE = '* * * * *';

export function sweeperSchedule(
  s: Settings,
  n: Names,
  deps: { sweeper: gcp.serviceaccount.Account; publicFunction: gcp.cloudfunctionsv2.Function; apis: pulumi.Resource[] },
): gcp.cloudscheduler.Job {
  return new gcp.cloudscheduler.Job(
    'sweeper-schedule',
    {
      project: s.project,
      region: s.region,
      name: n.sweeperJob,
      description: 'clauderun: settle turns whose sandbox ended without a word',
      schedule: SWEEP_SCHEDULE,
      timeZone: 'Etc/UTC',
      // A sweep that takes longer than this is cut off, and its request with the instance's CPU
      // (cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs: "If the request
      // handler does not respond by this deadline then the request is cancelled"; HTTP targets
      // take 15 s to 30 min, default 3 min). Filling the warm pool may wait on runJob retries
      // (seconds each), so a sweep is given the default: one that overlaps the next is harmless,
      // both judge and fill the pool in the store's transactions.
      attemptDeadline: '180s',
      // No retries: the next run is at most a minute away, and a retry would overlap it.
      retryConfig: { retryCount: 0 },
      httpTarget: {
        uri: `${n.apiUrl}${SWEEP_PATH}`,
        httpMethod: 'POST',
        oidcToken: { serviceAccountEmail: deps.sweeper.email, audience: n.apiUrl },
      },
    },
    // The target must exist before the first call: else the first minutes log 404s.
    { dependsOn: [...deps.apis, deps.publicFunction] },
  );
}
