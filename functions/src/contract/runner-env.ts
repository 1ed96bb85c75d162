/**
 * What a launcher hands the runner, and the runner reads: the API's URL and either a turn with its
 * token (a sandbox started for that turn) or a warm sandbox's id with its pool token (a sandbox
 * started ahead, which asks the API for its turn). Nothing else of a turn. Imports nothing, so the
 * runner, the launchers, the infra program and the fakes of the cloud can all share it without zod.
 */
export const RUNNER_ENV = {
  turnId: 'TURN_ID',
  /** The turn's only credential: for the API's runner routes and, as the API key, for the model proxy. */
  turnToken: 'TURN_TOKEN',
  /** The API as the sandbox reaches it, possibly under a path (see runner-paths.ts). */
  apiUrl: 'API_URL',
  /** A warm sandbox's id: the turn that claims it comes from the API with its token. */
  sandboxId: 'SANDBOX_ID',
  /** A warm sandbox's only credential before its claim: good for asking for that turn, nothing else. */
  poolToken: 'POOL_TOKEN',
} as const;
export type RunnerEnvName = (typeof RUNNER_ENV)[keyof typeof RUNNER_ENV];

/** Who a sandbox is for: one turn, or whichever turn claims it (a warm sandbox). */
export type SandboxCredentials = { turnId: string; turnToken: string } | { sandboxId: string; poolToken: string };

/** The values for RUNNER_ENV's names, as a launcher sets them. */
export function runnerEnv(credentials: SandboxCredentials, apiUrl: string): Partial<Record<RunnerEnvName, string>> {
  if ('poolToken' in credentials) {
    return { [RUNNER_ENV.sandboxId]: credentials.sandboxId, [RUNNER_ENV.poolToken]: credentials.poolToken, [RUNNER_ENV.apiUrl]: apiUrl };
  }
  return { [RUNNER_ENV.turnId]: credentials.turnId, [RUNNER_ENV.turnToken]: credentials.turnToken, [RUNNER_ENV.apiUrl]: apiUrl };
}

/**
 * The runner's container in the sandbox job (infra/sandbox-job.ts): each execution's overrides
 * name it, so that the turn's variables can only ever reach that container.
 */
export const SANDBOX_CONTAINER_NAME = 'runner';
