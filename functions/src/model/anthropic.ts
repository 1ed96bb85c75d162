import type { ProxiedCall } from './proxy-policy.js';
import type { ModelUpstream, UpstreamRequest } from './upstream.js';

/** The Messages API's path of each call the proxy passes on. */
const PATHS: Record<ProxiedCall, string> = {
  messages: '/v1/messages',
  count_tokens: '/v1/messages/count_tokens',
};

/** The real Messages API (or anything that speaks it); the only holder of the real key. */
export class AnthropicUpstream implements ModelUpstream {
  readonly name = 'anthropic';
  readonly priceFactor = 1;

  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
  ) {}

  send(request: UpstreamRequest): Promise<Response> {
    return fetch(`${this.baseUrl}${PATHS[request.call]}${request.beta ? '?beta=true' : ''}`, {
      method: 'POST',
      headers: { ...request.headers, 'x-api-key': this.apiKey },
      body: request.body,
      signal: request.signal,
    });
  }
}
