/** The runner's routes on the API; one place so neither side can drift. Imports nothing. */
export const runnerPaths = {
  turn: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}`,
  state: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/state`,
  events: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/events`,
  result: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/result`,
  modelBase: '/internal/model',
} as const;
