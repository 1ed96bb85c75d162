import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Each request's fault in turn, by method and path (turn ids as :id), then 'pass'. */
export function faultPlan(plan: Record<string, Fault[]>): (request: FrontRequest) => Fault {
  const seen = new Map<string, number>();
  return ({ method, path }) => {
    const key = `${method} ${routeOf(path)}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return plan[key]?.[n] ?? 'pass';
  };
}

/** A runner path with its turn id as :id. */
export const routeOf = (path: string): string => path.replace(/^\/internal\/turns\/[^/]+/, '/internal/turns/:id');

/** What the front does with one request. */
export type Fault =
  /** Forward it and pass the answer back. */
  | 'pass'
  /** Answer it itself with this status, as an overloaded front end does; the API never sees it. */
  | { status: number; retryAfter?: string }
  /** Forward it, let the API handle it to the end, then drop the client's connection unanswered. */
  | 'drop-after-handled';

export interface FrontRequest {
  method: string;
  /** The path as the API sees it: the prefix stripped, without the query. */
  path: string;
}

export interface HandledRequest extends FrontRequest {
  /** What the API answered (the client may not have got it), or the front itself. */
  status: number;
  fault: Fault;
  /** When the request arrived (Date.now()). */
  at: number;
}

export interface PathFront {
  /** The service's URL as clients use it: origin and prefix, without a trailing slash. */
  url: string;
  origin: string;
  /** Requests under the prefix, in order: those the front answered itself too. */
  handled: HandledRequest[];
  /** Requests for paths outside the prefix: in front of a real function, another service's or nobody's. */
  outside: FrontRequest[];
  /** Decides each request's fate; everything passes by default. */
  fault: (request: FrontRequest) => Fault;
  /** Refuses every connection (ECONNREFUSED) for this long, dropping the open ones first. */
  refuseFor(ms: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A small stand-in for Google's front end before a function: the function is served under
 * /PREFIX on a cloudfunctions.net-style origin and sees its requests with /PREFIX stripped
 * (cloud.google.com/run/docs/triggering/https-request: "https://REGION-PROJECT_ID.cloudfunctions.net/FUNCTION_NAME").
 * It can also fail as a network between a sandbox and the API does: answer 503 itself, drop a
 * connection after the API has handled the request, refuse connections for a while.
 */
export async function startPathFront(target: string, prefix: string): Promise<PathFront> {
  const upstream = new URL(target);
  const handled: HandledRequest[] = [];
  const outside: FrontRequest[] = [];
  const server = http.createServer((req, res) => {
    const [rawPath = '/', query] = (req.url ?? '/').split('?', 2);
    const stripped = rawPath === prefix ? '/' : rawPath.startsWith(`${prefix}/`) ? rawPath.slice(prefix.length) : undefined;
    if (stripped === undefined) {
      outside.push({ method: req.method ?? 'GET', path: rawPath });
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: 'outside the prefix' } }));
      return;
    }
    const request: FrontRequest = { method: req.method ?? 'GET', path: stripped };
    const at = Date.now();
    const fault = front.fault(request);
    if (typeof fault === 'object') {
      handled.push({ ...request, status: fault.status, fault, at });
      req.resume();
      res
        .writeHead(fault.status, { 'content-type': 'text/html', ...(fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {}) })
        .end('<html>busy</html>');
      return;
    }
    const forwarded = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: query === undefined ? stripped : `${stripped}?${query}`,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        const record = () => handled.push({ ...request, status: answer.statusCode ?? 0, fault, at });
        if (fault === 'drop-after-handled') {
          // The whole answer comes back from the API before the client's connection is dropped.
          answer.resume();
          answer.once('end', () => {
            record();
            req.socket.destroy();
          });
          return;
        }
        record();
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        // Streams (SSE) pass through as they come.
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    forwarded.once('error', () => req.socket.destroy());
    res.once('close', () => forwarded.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const front: PathFront = {
    url: `${origin}${prefix}`,
    origin,
    handled,
    outside,
    fault: () => 'pass',
    refuseFor: async (ms) => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      setTimeout(() => server.listen(port, '127.0.0.1'), ms);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return front;
}
