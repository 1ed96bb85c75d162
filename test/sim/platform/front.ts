import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Transform, pipeline, type TransformCallback } from 'node:stream';
import { NoInstanceError, type InstancePool, type Lease } from './pool.js';

/**
 * Google's front end, as far as a function sees it: where a URL leads, the size caps of requests
 * and responses, the request timeout, and what a request gets when no instance can take it.
 */

const MB = 1024 * 1024;
/**
 * 2nd gen HTTP functions: "Max uncompressed HTTP request size 32MB"; "Max uncompressed HTTP
 * response size: 10MB for streaming responses, 32MB for non-streaming responses"
 * (https://cloud.google.com/functions/quotas). A response is streamed when it has no Content-Length.
 */
export const REQUEST_LIMIT_BYTES = 32 * MB;
export const RESPONSE_LIMIT_BYTES = 32 * MB;
export const STREAMED_RESPONSE_LIMIT_BYTES = 10 * MB;

/** Headers of one connection, not of the request (RFC 9110 section 7.6.1): a proxy does not forward them. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization']);

export type Router = (url: string) => { pool: InstancePool; path: string } | undefined;

/** The front's own answers are Google's, not the function's: short HTML pages like Google's. */
function answer(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `<!DOCTYPE html>\n<html><head><title>${status}</title></head><body><p>${text}</p></body></html>\n`;
  res.writeHead(status, { 'content-type': 'text/html; charset=UTF-8', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
}

/**
 * The function under its prefix on a cloudfunctions.net-style origin: `/NAME/x` reaches NAME as
 * `/x`, `/NAME` as `/`; the front end strips the name before the code sees the path
 * (https://cloud.google.com/functions/docs/calling/http, functions-framework-nodejs#45).
 */
export function prefixRouter(pools: () => Map<string, InstancePool>): Router {
  return (url) => {
    const match = /^\/([^/?#]+)(\/[^?#]*)?(\?.*)?$/.exec(url);
    const pool = match?.[1] === undefined ? undefined : pools().get(match[1]);
    if (pool === undefined) return undefined;
    return { pool, path: `${match?.[2] ?? '/'}${match?.[3] ?? ''}` };
  };
}

/** The function at the root of its run.app-style origin (https://cloud.google.com/run/docs/triggering/https-request). */
export function rootRouter(pool: () => InstancePool | undefined): Router {
  return (url) => {
    const p = pool();
    return p === undefined || !url.startsWith('/') ? undefined : { pool: p, path: url };
  };
}

export interface FrontServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startFront(route: Router, log: (message: string) => void, port = 0): Promise<FrontServer> {
  const server = http.createServer((req, res) => void serve(req, res, route, log));
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void serveUpgrade(req, socket, head, route, log));
  // Google's front end holds a request as long as the function's timeout allows, not Node's defaults.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function serve(req: http.IncomingMessage, res: http.ServerResponse, route: Router, log: (message: string) => void): Promise<void> {
  const target = route(req.url ?? '');
  // No function there (https://cloud.google.com/functions/docs/calling/http): Google's own 404 page.
  if (target === undefined) return answer(res, 404, 'The requested URL was not found on this server.');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > REQUEST_LIMIT_BYTES) return answer(res, 413, 'Your client issued a request that was too large.');

  let clientGone = false;
  res.once('close', () => (clientGone = true));
  let lease: Lease;
  try {
    lease = await target.pool.acquire();
  } catch (error) {
    // Every instance at its concurrency and no room for another: requests wait, then fail with
    // 429 (https://cloud.google.com/run/docs/configuring/max-instances), logged as "The request
    // was aborted because there was no available instance" (https://cloud.google.com/run/docs/known-issues).
    // A container that cannot start: 503.
    if (error instanceof NoInstanceError) return answer(res, 429, error.message);
    log(`front: ${(error as Error).message}`);
    return answer(res, 503, 'Service Unavailable');
  }
  if (clientGone) return lease.release();
  proxy(req, res, target.path, lease, target.pool.timeoutSeconds);
}

/**
 * "Cloud Run supports WebSockets [...] WebSockets requests are treated as long-running HTTP
 * requests in Cloud Run. They are subject to request timeouts [...] even if your application
 * enforces idle timeouts" (https://cloud.google.com/run/docs/triggering/websockets): an upgrade
 * holds one of its instance's concurrent requests, and is cut at the request timeout.
 */
async function serveUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, route: Router, log: (message: string) => void): Promise<void> {
  socket.on('error', () => {});
  const refuse = (status: number, text: string) => void socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  const target = route(req.url ?? '');
  if (target === undefined) return refuse(404, 'Not Found');
  let lease: Lease;
  try {
    lease = await target.pool.acquire();
  } catch (error) {
    if (error instanceof NoInstanceError) return refuse(429, 'Too Many Requests');
    log(`front: ${(error as Error).message}`);
    return refuse(503, 'Service Unavailable');
  }
  if (socket.destroyed) return lease.release();
  const upstream = net.connect(lease.instance.port, '127.0.0.1');
  const timer = setTimeout(() => drop(), target.pool.timeoutSeconds * 1000);
  let released = false;
  const drop = () => {
    clearTimeout(timer);
    socket.destroy();
    upstream.destroy();
    if (!released) lease.release();
    released = true;
  };
  upstream.on('error', drop).on('close', drop);
  socket.on('close', drop);
  const lines = [`${req.method} ${target.path} HTTP/1.1`];
  // The upgrade's own Connection and Upgrade go on (the instance must see them); the front adds its X-Forwarded-For.
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? '';
    if (!['x-forwarded-for', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authorization'].includes(name.toLowerCase())) {
      lines.push(`${name}: ${req.rawHeaders[i + 1] ?? ''}`);
    }
  }
  lines.push(`x-forwarded-for: ${req.socket.remoteAddress ?? '127.0.0.1'}`);
  upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length > 0) upstream.write(head);
  socket.pipe(upstream).pipe(socket);
}

function proxy(req: http.IncomingMessage, res: http.ServerResponse, path: string, lease: Lease, timeoutSeconds: number): void {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '127.0.0.1';
  const upstream = http.request({ host: '127.0.0.1', port: lease.instance.port, method: req.method, path, headers, agent: false });

  // "If a response isn't returned within the time specified, the request ends and an error 504 is
  // returned. [...] the container instance that served the request is not terminated."
  // (https://cloud.google.com/run/docs/configuring/request-timeout)
  const timer = setTimeout(() => {
    answer(res, 504, 'upstream request timeout');
    upstream.destroy();
  }, timeoutSeconds * 1000);
  // The request is over for the platform when its client's response is: the instance may freeze.
  res.once('close', () => {
    clearTimeout(timer);
    upstream.destroy();
    lease.release();
  });

  let sent = 0;
  req.on('data', (chunk: Buffer) => {
    sent += chunk.length;
    if (sent > REQUEST_LIMIT_BYTES) {
      req.pause();
      upstream.destroy();
      answer(res, 413, 'Your client issued a request that was too large.');
      return;
    }
    if (!upstream.write(chunk)) {
      req.pause();
      upstream.once('drain', () => req.resume());
    }
  });
  req.once('end', () => upstream.end());
  req.once('error', () => upstream.destroy());

  upstream.once('error', () => {
    // The instance closed the connection, or crashed: the front end answers for it (the status
    // is not documented; here 503).
    if (!res.headersSent) answer(res, 503, 'Service Unavailable');
    else res.destroy();
  });
  upstream.once('response', (upstreamRes) => {
    const length = upstreamRes.headers['content-length'];
    // Google documents the limits, not what the client then gets: here a 500 for a response
    // known too large before it starts, a cut connection for one that grows too large.
    if (length !== undefined && Number(length) > RESPONSE_LIMIT_BYTES) {
      upstream.destroy();
      return answer(res, 500, 'The response from the function was too large.');
    }
    const outHeaders: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(upstreamRes.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) outHeaders[name] = value;
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, outHeaders);
    res.flushHeaders();
    const limit = length === undefined ? STREAMED_RESPONSE_LIMIT_BYTES : RESPONSE_LIMIT_BYTES;
    // Past the cap the client's connection is cut: it sees a response that never completes.
    pipeline(upstreamRes, new ByteCap(limit), res, () => undefined);
  });
}

/** Passes bytes through until more than `limit` have come, then fails the pipeline. */
class ByteCap extends Transform {
  private seen = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) callback(new Error(`response over ${this.limit} bytes`));
    else callback(null, chunk);
  }
}
