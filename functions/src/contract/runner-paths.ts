/** The runner's routes on the API; one place so neither side can drift. Imports nothing. */
export const runnerPaths = {
  turn: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}`,
  state: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/state`,
  events: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/events`,
  result: (turnId: string) => `/internal/turns/${encodeURIComponent(turnId)}/result`,
  modelBase: '/internal/model',
} as const;

/**
 * One of the paths above under API_URL, keeping API_URL's own path: a function is served at
 * https://REGION-PROJECT.cloudfunctions.net/NAME, and the front end strips /NAME before the API
 * sees the request (cloud.google.com/run/docs/triggering/https-request). `new URL(path, apiUrl)`
 * would drop /NAME and reach another function, or none.
 */
export function runnerUrl(apiUrl: string, path: string): URL {
  const base = new URL(apiUrl);
  return new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}${path}`);
}
