/** One call to the Messages API, as the model proxy passes it on. */
export interface UpstreamRequest {
  /** Path and query after the API root, e.g. "/v1/messages?beta=true". */
  pathAndQuery: string;
  /** Headers worth forwarding (anthropic-version, anthropic-beta, content-type); never credentials. */
  headers: Record<string, string>;
  body: Buffer;
  signal: AbortSignal;
}

/** Where the model proxy sends the agent's calls: the real API or the built-in demo model. */
export interface ModelUpstream {
  readonly name: string;
  send(request: UpstreamRequest): Promise<Response>;
}
