import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { RunnerResult, RunnerTurn, runnerPaths } from '../../functions/src/contract/runner.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The runner's only channel to the world: the API, authenticated with the turn token. */
export class RunnerApi {
  constructor(
    private readonly apiUrl: string,
    private readonly turnId: string,
    private readonly token: string,
  ) {}

  get modelBaseUrl(): string {
    return `${this.apiUrl}${runnerPaths.modelBase}`;
  }

  async getTurn(): Promise<RunnerTurn> {
    const response = await this.request('GET', runnerPaths.turn(this.turnId));
    return RunnerTurn.parse(await response.json());
  }

  /** The previous state archive as a stream, or undefined when there is none. */
  async getState(): Promise<Readable | undefined> {
    const response = await this.request('GET', runnerPaths.state(this.turnId));
    if (response.status === 204 || response.body === null) return undefined;
    return Readable.fromWeb(response.body);
  }

  async putState(archive: Readable, bytes: number): Promise<void> {
    await this.request('PUT', runnerPaths.state(this.turnId), {
      body: Readable.toWeb(archive) as ReadableStream,
      headers: { 'content-type': 'application/gzip', 'content-length': String(bytes) },
      duplex: 'half',
    });
  }

  async postResult(result: RunnerResult): Promise<void> {
    await this.request('POST', runnerPaths.result(this.turnId), {
      body: JSON.stringify(RunnerResult.parse(result)),
      headers: { 'content-type': 'application/json' },
    });
  }

  /** Retries only failures to connect (the bridge may still be starting); never a sent request. */
  private async request(method: string, path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
    const headers = { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${this.token}` };
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(`${this.apiUrl}${path}`, { ...init, method, headers });
      } catch (error) {
        const code = (error as { cause?: { code?: string } }).cause?.code;
        if (attempt < 50 && (code === 'ECONNREFUSED' || code === 'ECONNRESET') && !(init.body instanceof ReadableStream)) {
          await sleep(Math.min(20 * 2 ** attempt, 500));
          continue;
        }
        throw error;
      }
      if (!response.ok) {
        const text = await response.text().catch(() => '');
        throw new ApiError(response.status, `${method} ${path}: ${response.status} ${text.slice(0, 500)}`);
      }
      return response;
    }
  }
}
