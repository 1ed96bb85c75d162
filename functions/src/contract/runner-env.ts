/**
 * What a launcher hands the runner, and the runner reads: each sandbox gets these three variables
 * and nothing else of the turn. Imports nothing, so the runner, both launchers, the infra program
 * and the fakes of the cloud can all share it without zod.
 */
export const RUNNER_ENV = {
  turnId: 'TURN_ID',
  /** The turn's only credential: for the API's runner routes and, as the API key, for the model proxy. */
  turnToken: 'TURN_TOKEN',
  /** The API as the sandbox reaches it, possibly under a path (see runner-paths.ts). */
  apiUrl: 'API_URL',
} as const;
export type RunnerEnvName = (typeof RUNNER_ENV)[keyof typeof RUNNER_ENV];

/** The values for RUNNER_ENV's names, as a launcher sets them. */
export function runnerEnv(values: { turnId: string; turnToken: string; apiUrl: string }): Record<RunnerEnvName, string> {
  return { [RUNNER_ENV.turnId]: values.turnId, [RUNNER_ENV.turnToken]: values.turnToken, [RUNNER_ENV.apiUrl]: values.apiUrl };
}

/**
 * The runner's container in the sandbox job (infra/sandbox-job.ts): each execution's overrides
 * name it, so that the turn's variables can only ever reach that container.
 */
export const SANDBOX_CONTAINER_NAME = 'runner';
