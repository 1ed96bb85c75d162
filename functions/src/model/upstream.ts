import type { ProxiedCall } from './proxy-policy.js';

/** One call to the Messages API, as the model proxy passes it on. */
export interface UpstreamRequest {
  /** Which of the Messages API's calls it is: each upstream knows its own path for it. */
  call: ProxiedCall;
  /** The CLI marked it as a beta call (`?beta=true` on the Messages API). */
  beta: boolean;
  /** Headers worth forwarding (anthropic-version, anthropic-beta, content-type); never credentials. */
  headers: Record<string, string>;
  /** The body as the policy checked it: the Messages API's JSON, `model` in it. */
  body: Buffer;
  signal: AbortSignal;
}

/** Where the model proxy sends the agent's calls: the real API, Claude on Vertex AI or the built-in demo model. */
export interface ModelUpstream {
  readonly name: string;
  /** What its calls cost over the Claude API's list prices (pricing.ts costUsd): 0 when free. */
  readonly priceFactor: number;
  send(request: UpstreamRequest): Promise<Response>;
}

/**
 * The upstream could not get the credentials it calls with (Vertex AI's access token, say). Its
 * message says what to check and never holds a credential: the proxy answers it to the sandbox.
 */
export class UpstreamCredentialsError extends Error {
  override name = 'UpstreamCredentialsError';
}
