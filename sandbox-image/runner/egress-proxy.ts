import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { runnerPaths, runnerUrl } from '../../functions/src/contract/runner-paths.js';
import { TUNNEL_CLOSE, type TunnelMode } from '../../functions/src/egress/tunnel-protocol.js';
import { TunnelClosedError, TunnelStream } from '../../functions/src/egress/tunnel-stream.js';

/** A connection the API would not open, or could not: answered to the tool with `status`. */
export class TunnelRefused extends Error {
  constructor(
    readonly status: 403 | 502,
    message: string,
  ) {
    super(message);
  }
}

export type TunnelOpener = (host: string, port: number, mode: TunnelMode) => Promise<Duplex>;

export interface ApiTunnels {
  open: TunnelOpener;
  /**
   * Resolves once the API has closed every tunnel (it closes each after recording it, so that
   * every connection's event is in before the turn's result), or after `timeoutMs`, when the
   * ones left are dropped.
   */
  settled(timeoutMs: number): Promise<void>;
}

/**
 * Tunnels one turn may have open at once; more wait for one to close. Each holds one of the
 * runner function's requests, which the sandboxes' model calls need too (npm opens up to 15
 * connections per host, and reuses them).
 */
export const MAX_OPEN_TUNNELS = 8;

/**
 * Opens tunnels to the API's egress route with the turn token. The token is not the agent's to
 * use, but a hostile tool in the sandbox can read it (/proc/<runner>/environ): everything it
 * allows the API holds to this turn, its caps and its deadline.
 */
export function apiTunnels(apiUrl: string, turnId: string, token: string, maxOpen = MAX_OPEN_TUNNELS): ApiTunnels {
  const live = new Set<WebSocket>();
  let inUse = 0;
  /** Openings waiting for a slot, oldest first. */
  const queued: (() => void)[] = [];
  const release = () => {
    inUse -= 1;
    const next = queued.shift();
    if (next !== undefined) {
      inUse += 1;
      next();
    }
  };
  const open: TunnelOpener = async (host, port, mode) => {
    if (inUse < maxOpen) inUse += 1;
    else await new Promise<void>((resolve) => queued.push(resolve));
    return connect(host, port, mode);
  };
  const connect: TunnelOpener = (host, port, mode) =>
    new Promise((resolve, reject) => {
      const url = runnerUrl(apiUrl, runnerPaths.egress(turnId));
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      url.search = new URLSearchParams({ host, port: String(port), mode }).toString();
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, handshakeTimeout: 30_000 });
      live.add(ws);
      ws.once('close', () => {
        live.delete(ws);
        release();
      });
      const stream = new TunnelStream(ws, 'runner');
      const refuse = (error: Error) => {
        stream.destroy();
        if (error instanceof TunnelClosedError && error.code === TUNNEL_CLOSE.refused) reject(new TunnelRefused(403, error.reason));
        else reject(new TunnelRefused(502, `the egress tunnel to ${host}:${port} failed: ${error.message}`));
      };
      stream.once('error', refuse);
      // The API answers a refusal before any WebSocket, with its reason in the error body.
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < MAX_ANSWER_CHARS) body += chunk;
        });
        res.once('end', () => {
          const message = messageOfAnswer(body);
          if (res.statusCode === 403) refuse(new TunnelClosedError(TUNNEL_CLOSE.refused, message ?? 'refused'));
          else refuse(new Error(`the API answered ${res.statusCode}${message === undefined ? '' : `: ${message}`}`));
          ws.terminate();
        });
      });
      stream.once('control', () => {
        stream.off('error', refuse);
        resolve(stream);
      });
    });
  const settled = async (timeoutMs: number) => {
    const closes = [...live].map(
      (ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve()))),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(closes), timeout]);
    clearTimeout(timer);
    for (const ws of live) ws.terminate();
  };
  return { open, settled };
}

/** The most of an answer's body that is read for its message. */
const MAX_ANSWER_CHARS = 8 * 1024;

/** The message of the API's error body (contract/api.ts ErrorBody), if it is one. */
function messageOfAnswer(body: string): string | undefined {
  try {
    const message: unknown = (JSON.parse(body) as { error?: { message?: unknown } }).error?.message;
    return typeof message === 'string' ? message : undefined;
  } catch {
    return undefined;
  }
}

/** Headers that belong to one hop (RFC 9110 7.6.1), and the proxy's own. */
const HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
]);

/**
 * The agent's proxy, on loopback inside the sandbox: CONNECT (which carries TLS only: the API
 * checks that the first bytes are a ClientHello naming the host) and plain-HTTP requests in
 * absolute form. Each connection is a tunnel of its own to the API; what the API refuses is
 * answered with a 403 that says why.
 */
export async function startEgressProxy(open: TunnelOpener): Promise<{ url: string; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    client.on('error', () => {});
    const target = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(req.url ?? '');
    const host = target?.[1];
    const port = Number(target?.[2]);
    if (host === undefined || port < 1 || port > 65535) return refuseRaw(client, 400, 'CONNECT takes host:port');
    open(host, port, 'tls').then(
      (tunnel) => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length > 0) tunnel.write(head);
        splice(client, tunnel);
      },
      (error: unknown) => refuseRaw(client, statusOf(error), messageOf(error, host, port)),
    );
  });

  server.on('request', (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      return plain(res, 400, 'this proxy takes absolute http:// URLs (https goes through CONNECT)');
    }
    if (url.protocol !== 'http:') return plain(res, 400, 'this proxy takes absolute http:// URLs (https goes through CONNECT)');
    const port = url.port === '' ? 80 : Number(url.port);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // Host decides what the server serves: naming another host than the URL would reach it through this one's address.
    const named = (req.headers.host ?? '').toLowerCase();
    if (named !== url.host.toLowerCase()) return plain(res, 400, `the Host header (${named}) names another host than the URL (${url.host})`);
    // The API lets a plain-HTTP connection carry one request, whose end it must know.
    if (req.headers['transfer-encoding'] !== undefined)
      return plain(res, 411, 'plain-HTTP requests through this proxy need a Content-Length (chunked bodies go over HTTPS)');
    open(host, port, 'http').then(
      (tunnel) => {
        const headers: http.OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(req.headers)) if (!HOP_HEADERS.has(name) && value !== undefined) headers[name] = value;
        // One request per tunnel: the API checks the Host of the first request alone.
        headers.connection = 'close';
        // A request without a body says so: Node would send a POST without a length chunked.
        if (headers['content-length'] === undefined) headers['content-length'] = '0';
        const upstream = http.request({
          method: req.method,
          path: `${url.pathname}${url.search}`,
          headers,
          createConnection: () => tunnel as net.Socket,
        });
        upstream.on('response', (answer) => {
          const back: http.OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(answer.headers)) if (!HOP_HEADERS.has(name) && value !== undefined) back[name] = value;
          res.writeHead(answer.statusCode ?? 502, answer.statusMessage, back);
          answer.pipe(res);
          answer.on('error', () => res.destroy());
        });
        upstream.on('error', (error) => {
          if (res.headersSent) res.destroy();
          else if (error instanceof TunnelClosedError && error.code === TUNNEL_CLOSE.refused)
            plain(res, 403, messageOf(new TunnelRefused(403, error.reason), host, port));
          else plain(res, 502, `the request to ${url.host} failed: ${error.message}`);
        });
        req.pipe(upstream);
      },
      (error: unknown) => plain(res, statusOf(error), messageOf(error, host, port)),
    );
  });

  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

function statusOf(error: unknown): 403 | 502 {
  return error instanceof TunnelRefused ? error.status : 502;
}

function messageOf(error: unknown, host: string, port: number): string {
  if (error instanceof TunnelRefused && error.status === 403)
    return `clauderun: ${host}:${port} is not reachable from this sandbox: ${error.message}\n`;
  return `clauderun: could not connect to ${host}:${port}: ${(error as Error).message}\n`;
}

function plain(res: http.ServerResponse, status: number, message: string): void {
  const body = message.endsWith('\n') ? message : `${message}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

function refuseRaw(client: net.Socket, status: number, message: string): void {
  const body = message.endsWith('\n') ? message : `${message}\n`;
  const text = status === 403 ? 'Forbidden' : status === 400 ? 'Bad Request' : 'Bad Gateway';
  client.end(
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Bytes both ways, half-closes passed on, and either side's failure ending both. */
function splice(client: net.Socket, tunnel: Duplex): void {
  const drop = () => {
    client.destroy();
    tunnel.destroy();
  };
  client.on('error', drop);
  tunnel.on('error', drop);
  client.pipe(tunnel);
  tunnel.pipe(client);
  let closed = 0;
  const bothClosed = () => {
    closed += 1;
    if (closed === 2) drop();
  };
  client.once('close', bothClosed);
  tunnel.once('close', bothClosed);
}
