import type { ModelUpstream, UpstreamRequest } from './upstream.js';

/** The real Messages API (or anything that speaks it); the only holder of the real key. */
export class AnthropicUpstream implements ModelUpstream {
  readonly name = 'anthropic';

  constructor(
    private readonly baseUrl: string,
    private readonly apiKey: string,
  ) {}

  send(request: UpstreamRequest): Promise<Response> {
    return fetch(`${this.baseUrl}${request.pathAndQuery}`, {
      method: 'POST',
      headers: { ...request.headers, 'x-api-key': this.apiKey },
      body: request.body,
      signal: request.signal,
    });
  }
}
