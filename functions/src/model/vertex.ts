import type { ProxiedCall } from './proxy-policy.js';
import { UpstreamCredentialsError, type ModelUpstream, type UpstreamRequest } from './upstream.js';

/**
 * Claude on Vertex AI. Vertex speaks the Messages API with two differences
 * (platform.claude.com/docs/en/build-with-claude/claude-on-vertex-ai): the model is named in the
 * URL, not in the body, and `anthropic_version` is a body field with the value
 * `vertex-2023-10-16`, not a header. Its answers are the Messages API's own (JSON, or SSE when
 * streamed), so the proxy meters them unchanged.
 *
 * Paths (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude):
 *   POST {endpoint}/v1/projects/P/locations/R/publishers/anthropic/models/MODEL:rawPredict
 *   POST ...:streamRawPredict when the body asks for `stream: true`
 * and for counting tokens, one endpoint for every model, the model kept in the body
 * (cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/count-tokens):
 *   POST {endpoint}/v1/projects/P/locations/R/publishers/anthropic/models/count-tokens:rawPredict
 *
 * It calls with an OAuth access token of Application Default Credentials: on Cloud Run the
 * service account's, from the metadata server (cloud.google.com/run/docs/securing/service-identity),
 * which google-auth-library caches and renews before it expires.
 */

export const VERTEX_ANTHROPIC_VERSION = 'vertex-2023-10-16';
/** What an access token must be good for to call Vertex AI. */
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

export interface VertexSettings {
  project: string;
  /** A region that offers the models, or `global`. */
  region: string;
  /** The API's base URL (config.ts vertexEndpoint), or a stand-in's. */
  endpoint: string;
}

/** What gives the upstream its access tokens: google-auth-library's GoogleAuth, or a test's own. */
export interface AccessTokenSource {
  getAccessToken(): Promise<string | null | undefined>;
}

/** Headers passed on; `anthropic-version` is replaced by the body's `anthropic_version`, `anthropic-beta` is filtered. */
const FORWARDED_HEADERS = ['content-type', 'accept'];

/**
 * The `anthropic-beta` values Vertex AI takes: it refuses the whole call, 400 "Unexpected
 * value(s) ... for the anthropic-beta header", for one it does not know, and it knows fewer than
 * the Claude API. These are the ones the pinned CLI itself sends to Vertex, and sends the proxy
 * when its experimental betas are off (CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS, which the runner
 * sets for a Vertex deployment: RunnerTurn.experimentalBetas); any other is dropped here.
 */
export const VERTEX_BETAS: ReadonlySet<string> = new Set([
  'claude-code-20250219',
  'interleaved-thinking-2025-05-14',
  'context-management-2025-06-27',
  'effort-2025-11-24',
  'thinking-token-count-2026-05-13',
]);

export interface VertexCall {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** A model id in a path segment: `@` (of `claude-sonnet-4-5@20250929`) is a valid path character and stays as Google writes it. */
const segment = (value: string) => encodeURIComponent(value).replaceAll('%40', '@');

/** The Vertex AI request for one call of the Messages API (the body as the policy checked it). Pure. */
export function vertexCall(settings: VertexSettings, request: Pick<UpstreamRequest, 'call' | 'headers' | 'body'>): VertexCall {
  const { model, ...rest } = JSON.parse(request.body.toString('utf8')) as { model?: unknown; stream?: unknown } & Record<string, unknown>;
  if (typeof model !== 'string' || model === '') throw new Error('a Messages API request names its model');
  const base = `${settings.endpoint}/v1/projects/${segment(settings.project)}/locations/${segment(settings.region)}/publishers/anthropic/models`;
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers[name];
    if (value !== undefined) headers[name] = value;
  }
  const betas = (request.headers['anthropic-beta'] ?? '')
    .split(',')
    .map((beta) => beta.trim())
    .filter((beta) => VERTEX_BETAS.has(beta));
  if (betas.length > 0) headers['anthropic-beta'] = betas.join(',');
  headers['content-type'] = 'application/json';
  const kinds: Record<ProxiedCall, () => VertexCall> = {
    messages: () => ({
      url: `${base}/${segment(model)}:${rest.stream === true ? 'streamRawPredict' : 'rawPredict'}`,
      headers,
      // The version last: nothing in the body can replace it.
      body: JSON.stringify({ ...rest, anthropic_version: VERTEX_ANTHROPIC_VERSION }),
    }),
    // Google's example body holds the model and the messages; the version is sent as for every
    // call (Anthropic's Vertex SDK sends it here too).
    count_tokens: () => ({
      url: `${base}/count-tokens:rawPredict`,
      headers,
      body: JSON.stringify({ ...rest, model, anthropic_version: VERTEX_ANTHROPIC_VERSION }),
    }),
  };
  return kinds[request.call]();
}

/**
 * Vertex AI's regional and multi-region endpoints cost 10% over its global one, which is priced
 * as the Claude API (platform.claude.com/docs/en/build-with-claude/claude-on-vertex-ai, "Global
 * vs regional endpoints": for Claude Sonnet 4.5 and later; counted for every model here, so that
 * a budget is never under-counted). Google's price list is the bill's.
 */
export const REGIONAL_PRICE_FACTOR = 1.1;

export class VertexUpstream implements ModelUpstream {
  readonly name = 'vertex';
  readonly priceFactor: number;
  private tokens: Promise<AccessTokenSource> | undefined;

  /** Without `tokens`, Application Default Credentials (google-auth-library, loaded on first use). */
  constructor(
    private readonly settings: VertexSettings,
    tokens?: AccessTokenSource,
  ) {
    this.priceFactor = settings.region === 'global' ? 1 : REGIONAL_PRICE_FACTOR;
    if (tokens !== undefined) this.tokens = Promise.resolve(tokens);
  }

  async send(request: UpstreamRequest): Promise<Response> {
    const call = vertexCall(this.settings, request);
    const token = await this.accessToken();
    const answer = await fetch(call.url, {
      method: 'POST',
      headers: { ...call.headers, authorization: `Bearer ${token}` },
      body: call.body,
      signal: request.signal,
    });
    return answer.ok ? answer : asMessagesApiError(answer);
  }

  private async accessToken(): Promise<string> {
    this.tokens ??= import('google-auth-library').then(({ GoogleAuth }) => new GoogleAuth({ scopes: CLOUD_PLATFORM_SCOPE }));
    let token: string | null | undefined;
    try {
      token = await (await this.tokens).getAccessToken();
    } catch (error) {
      throw new UpstreamCredentialsError(NO_TOKEN, { cause: error });
    }
    if (typeof token !== 'string' || token === '') throw new UpstreamCredentialsError(NO_TOKEN);
    return token;
  }
}

/** The Messages API's error type for an HTTP status, as the agent reads it. */
function errorType(status: number): string {
  const types: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    413: 'request_too_large',
    429: 'rate_limit_error',
    529: 'overloaded_error',
  };
  return types[status] ?? 'api_error';
}

/**
 * Vertex AI answers what it refuses itself (credentials, permissions, quota, a model not enabled)
 * in Google's error shape, `{error: {code, message, status}}`, often inside a one-element array
 * (`[{"error": {...}}]`, as its 429 for a quota and 400 for a model not enabled come); the model's own errors come in the
 * Messages API's. The agent reads only the latter, so the former is rewritten into it, with the
 * same status (and Retry-After), its message kept and marked as Vertex's.
 */
async function asMessagesApiError(answer: Response): Promise<Response> {
  const text = await answer.text();
  let google: { error?: { message?: unknown; status?: unknown } } | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    google = (Array.isArray(parsed) ? parsed[0] : parsed) as typeof google;
  } catch {
    google = undefined;
  }
  const headers = new Headers({ 'content-type': 'application/json' });
  const retryAfter = answer.headers.get('retry-after');
  if (retryAfter !== null) headers.set('retry-after', retryAfter);
  const error = google?.error;
  if (typeof error !== 'object' || error === null || typeof error.status !== 'string') {
    return new Response(text, { status: answer.status, headers: answer.headers });
  }
  const message = `Vertex AI: ${typeof error.message === 'string' ? error.message : error.status}`;
  return new Response(JSON.stringify({ type: 'error', error: { type: errorType(answer.status), message } }), { status: answer.status, headers });
}

const NO_TOKEN =
  'clauderun could not get a Google access token for Vertex AI from Application Default Credentials ' +
  "(on Cloud Run: the service account's, from the metadata server)";
