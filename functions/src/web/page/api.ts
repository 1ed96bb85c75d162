import type {
  AgentOptions,
  AuthMode,
  ClientConfig,
  ConversationList,
  ConversationView,
  CreatedConversation,
  ErrorBody,
  StartedTurnView,
  TurnLinks,
  TurnView,
  UsageView,
  WorkspaceListing,
} from '../../contract/api.js';
import { fillPath, PUBLIC_ROUTES } from '../../contract/routes.js';
import { resolveTurnLinks, turnLinks as linksFrom } from '../../contract/turn-links.js';

/** What the page holds for each auth mode: a mode the API gains is a compile error here until the page has its credential. */
interface Credentials {
  header: { userId: string };
  apikey: { key: string };
  firebase: { idToken: string; refreshToken: string; expiresAt: number; email: string };
}

/** Who the page acts for; kept in sessionStorage (see identity-store.ts). */
export type Identity = { [M in AuthMode]: { mode: M } & Credentials[M] }[AuthMode];

/** The archive formats of GET /api/conversations/:id/archive (contract/api.ts ArchiveQuery, which imports zod). */
export type ArchiveFormat = 'tar.gz' | 'zip';

/** The answer of POST /api/conversation with `Prefer: respond-async`, its links resolved into absolute URLs. */
export type StartedTurn = StartedTurnView;

/**
 * The page's own calls are relative to the page, which may sit under a path (see index.html):
 * `api/...`, never `/api/...`. `path` is one of the API's (contract/routes.ts), or a link it gave.
 */
export const apiUrl = (path: string): string => new URL(path.replace(/^\//, ''), document.baseURI).href;

/** A turn's links as the API gives them when it starts one, for turns found already running. */
export function turnLinks(conversationId: string, turnId: string): TurnLinks {
  return resolveTurnLinks(linksFrom({ conversationId, turnId }, PUBLIC_ROUTES.startTurn), apiUrl(PUBLIC_ROUTES.startTurn));
}

/** A failed call: the API's error code and message, or `network` when no answer came. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    /** undefined: the service could not be reached. */
    readonly status: number | undefined,
    readonly code: string,
    readonly apiMessage: string,
    readonly retryAfterSeconds: number | undefined = undefined,
    readonly details: Record<string, unknown> | undefined = undefined,
  ) {
    super(`${code}: ${apiMessage}`);
  }
}

export function authHeaders(identity: Identity | undefined): Record<string, string> {
  if (identity === undefined) return {};
  if (identity.mode === 'header') return { 'X-User-Id': identity.userId };
  return { Authorization: `Bearer ${identity.mode === 'apikey' ? identity.key : identity.idToken}` };
}

const isErrorBody = (body: unknown): body is ErrorBody =>
  typeof body === 'object' &&
  body !== null &&
  typeof (body as ErrorBody).error === 'object' &&
  typeof (body as ErrorBody).error?.code === 'string' &&
  typeof (body as ErrorBody).error?.message === 'string';

/** The ApiError an unsuccessful response stands for. */
export async function errorOf(response: Response): Promise<ApiError> {
  const retryAfter = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
  const body: unknown = await response.json().catch(() => undefined);
  const retryAfterSeconds = Number.isFinite(retryAfter) ? retryAfter : undefined;
  if (isErrorBody(body)) return new ApiError(response.status, body.error.code, body.error.message, retryAfterSeconds, body.error.details);
  return new ApiError(response.status, `http_${response.status}`, response.statusText || 'no error message', retryAfterSeconds);
}

/** fetch() that turns "no answer" and "an error answer" into ApiError. */
export async function request(url: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new ApiError(undefined, 'network', error instanceof Error ? error.message : String(error));
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** Who each call is made as: read as it goes, so a renewed ID token is used at once. */
export interface IdentitySource {
  /** The identity to send now (a Firebase ID token is renewed first if it has expired). */
  current(): Promise<Identity | undefined>;
  /** After the API refused `refused` (401): an identity worth one more try, or undefined. */
  afterRefusal(refused: Identity): Promise<Identity | undefined>;
}

/** One identity as it is, never renewed: none (client config), or the one being checked at sign-in. */
export const fixedIdentity = (identity: Identity | undefined): IdentitySource => ({
  current: async () => identity,
  afterRefusal: async () => undefined,
});

const withAuth = (init: RequestInit, identity: Identity | undefined): RequestInit => ({
  ...init,
  // The page passes its headers as plain objects, never as a Headers or a list of pairs.
  headers: { ...authHeaders(identity), ...(init.headers as Record<string, string> | undefined) },
});

/** The service's public API, same origin, as whoever `identities` names at the moment of each call. */
export class ApiClient {
  constructor(private readonly identities: IdentitySource) {}

  /**
   * request() with the caller's credentials; refused as unauthenticated, it is sent once more
   * with a renewed ID token (one may have expired on the way, or been revoked and re-issued).
   */
  async send(url: string, init: RequestInit): Promise<Response> {
    const identity = await this.identities.current();
    try {
      return await request(url, withAuth(init, identity));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401) || identity === undefined) throw error;
      const renewed = await this.identities.afterRefusal(identity);
      if (renewed === undefined) throw error;
      return request(url, withAuth(init, renewed));
    }
  }

  async clientConfig(): Promise<ClientConfig> {
    return this.json<ClientConfig>('GET', PUBLIC_ROUTES.clientConfig);
  }

  async listConversations(cursor?: string): Promise<ConversationList> {
    const query = new URLSearchParams({ limit: '20', ...(cursor === undefined ? {} : { cursor }) });
    return this.json<ConversationList>('GET', `${PUBLIC_ROUTES.conversations}?${query.toString()}`);
  }

  async conversation(conversationId: string): Promise<ConversationView> {
    return this.json<ConversationView>('GET', fillPath(PUBLIC_ROUTES.conversation, { conversationId }));
  }

  /** Starts a turn and answers at once; its progress comes from the events link. */
  /** Starts a turn: in `conversationId`, or in a new conversation with `options`. */
  async startTurn(message: string, conversationId: string | undefined, options?: AgentOptions): Promise<StartedTurn> {
    const url = apiUrl(PUBLIC_ROUTES.startTurn);
    const started = await this.json<StartedTurnView>(
      'POST',
      url,
      { message, ...(conversationId === undefined ? {} : { conversationId }), ...(options === undefined ? {} : { options }) },
      { Prefer: 'respond-async' },
    );
    return { ...started, links: resolveTurnLinks(started.links, url) };
  }

  /** Deletes the conversation with its state; the API cancels a turn still running in it. */
  async deleteConversation(conversationId: string): Promise<void> {
    await this.call('DELETE', fillPath(PUBLIC_ROUTES.conversation, { conversationId }));
  }

  /** A conversation with no turn yet, set up with `options`: somewhere to put files before the first prompt. */
  async createConversation(options: AgentOptions): Promise<string> {
    return (await this.json<CreatedConversation>('POST', PUBLIC_ROUTES.conversations, { options })).conversationId;
  }

  async listFiles(conversationId: string): Promise<WorkspaceListing> {
    return this.json<WorkspaceListing>('GET', fillPath(PUBLIC_ROUTES.files, { conversationId }));
  }

  /** One file's bytes, fetched with the caller's credentials (a plain link would carry none). */
  async fileBlob(conversationId: string, path: string): Promise<Blob> {
    return (await this.call('GET', fillPath(PUBLIC_ROUTES.file, { conversationId, path }))).blob();
  }

  /** Puts `data` at `path` in the workspace, replacing what is there. */
  async putFile(conversationId: string, path: string, data: Blob): Promise<void> {
    await this.send(apiUrl(fillPath(PUBLIC_ROUTES.file, { conversationId, path })), {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: data,
      cache: 'no-store',
    });
  }

  /** Deletes a file, or everything under a directory's path. */
  async deleteFile(conversationId: string, path: string): Promise<void> {
    await this.call('DELETE', fillPath(PUBLIC_ROUTES.file, { conversationId, path }));
  }

  async archiveBlob(conversationId: string, format: ArchiveFormat): Promise<Blob> {
    const query = new URLSearchParams({ format });
    return (await this.call('GET', `${fillPath(PUBLIC_ROUTES.archive, { conversationId })}?${query.toString()}`)).blob();
  }

  async usage(): Promise<UsageView> {
    return this.json<UsageView>('GET', PUBLIC_ROUTES.usage);
  }

  async cancel(cancelLink: string): Promise<TurnView> {
    return this.json<TurnView>('POST', cancelLink);
  }

  private async json<T>(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const response = await this.call(method, url, body, headers);
    // The API's own answers, typed by its contract (contract/api.ts).
    return (await response.json()) as T;
  }

  private call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return this.send(apiUrl(url), {
      method,
      headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      cache: 'no-store',
    });
  }
}
