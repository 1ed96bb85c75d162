import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentEvent, RunnerResult, RunnerTurn } from '../../functions/src/contract/runner.js';
import { runnerPaths } from '../../functions/src/contract/runner-paths.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Body = string | { stream: Readable; bytes: number } | undefined;

/**
 * The runner's only channel to the world: the API, authenticated with the turn token. Plain
 * node:http rather than fetch: it starts ~25 ms sooner, and every turn pays that.
 */
export class RunnerApi {
  private readonly base: URL;

  constructor(
    apiUrl: string,
    private readonly turnId: string,
    private readonly token: string,
  ) {
    this.base = new URL(apiUrl);
  }

  get modelBaseUrl(): string {
    return new URL(runnerPaths.modelBase, this.base).toString();
  }

  async getTurn(): Promise<RunnerTurn> {
    // The API is trusted and validates what it sends; the runner skips zod to start faster.
    return JSON.parse(await text(await this.request('GET', runnerPaths.turn(this.turnId)))) as RunnerTurn;
  }

  /** The previous state archive as a stream, or undefined when there is none. */
  async getState(): Promise<Readable | undefined> {
    const response = await this.request('GET', runnerPaths.state(this.turnId));
    if (response.statusCode === 204) {
      response.resume();
      return undefined;
    }
    return response;
  }

  async putState(archive: Readable, bytes: number): Promise<void> {
    (await this.request('PUT', runnerPaths.state(this.turnId), { stream: archive, bytes }, 'application/gzip')).resume();
  }

  async postEvents(events: AgentEvent[]): Promise<void> {
    (await this.request('POST', runnerPaths.events(this.turnId), JSON.stringify({ events }), 'application/json')).resume();
  }

  async postResult(result: RunnerResult): Promise<void> {
    (await this.request('POST', runnerPaths.result(this.turnId), JSON.stringify(result), 'application/json')).resume();
  }

  /** Retries only failures to connect (the bridge may still be starting); never a sent request. */
  private async request(method: string, path: string, body?: Body, contentType?: string): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, path, body, contentType);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // The local bridge comes up within milliseconds of the runner: poll it tightly for a while.
        if (attempt < 300 && (code === 'ECONNREFUSED' || code === 'ENOENT') && typeof body !== 'object') {
          await sleep(attempt < 100 ? 5 : 50);
          continue;
        }
        throw error;
      }
    }
  }

  private once(method: string, path: string, body: Body, contentType?: string): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (contentType !== undefined) headers['content-type'] = contentType;
    if (typeof body === 'string') headers['content-length'] = String(Buffer.byteLength(body));
    if (typeof body === 'object') headers['content-length'] = String(body.bytes);
    const client = url.protocol === 'https:' ? https : http;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const request = client.request(url, { method, headers }, (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(response);
        void text(response).then(
          (message) => reject(new ApiError(status, `${method} ${path}: ${status} ${message.slice(0, 500)}`)),
          reject,
        );
      });
      request.once('error', reject);
      if (typeof body === 'object') pipeline(body.stream, request).catch(reject);
      else request.end(body);
    });
  }
}

async function text(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
