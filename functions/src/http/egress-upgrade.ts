import http from 'node:http';
import type { Duplex } from 'node:stream';
import { Router } from 'express';
import { WebSocketServer } from 'ws';
import type { ErrorBody, ErrorCode } from '../contract/api.js';
import { INTERNAL_ROUTES } from '../contract/routes.js';
import { STATUS_OF } from './errors.js';
import type { RunnerService } from '../conversations/runner-service.js';
import type { EgressTunnels } from '../egress/tunnel.js';
import { MAX_FRAME_BYTES, type TunnelMode } from '../egress/tunnel-protocol.js';

const EGRESS_PATH = new RegExp(`^${INTERNAL_ROUTES.egress.replace(':turnId', '([^/]+)')}$`);

export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * The egress route: a WebSocket upgrade, authenticated by the turn token as the runner's other
 * routes are, whose connection the tunnels then carry. `upgrade` serves a server's 'upgrade'
 * event; `router` serves the same request where it arrives as a plain request, as it does on a
 * server with no 'upgrade' listener (the Functions Framework's): Node then passes it to the
 * request handler with the socket still usable, and a WebSocket client sends nothing before the
 * 101, so no bytes are lost.
 */
export function egressUpgrade(
  service: Pick<RunnerService, 'authenticateRunner'>,
  tunnels: EgressTunnels,
  log: (message: string) => void,
): { upgrade: UpgradeHandler; router: Router } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });

  const upgrade: UpgradeHandler = (req, socket, head) => {
    socket.on('error', () => {});
    // An 'upgrade' listener that throws takes the process down: a malformed request is answered instead.
    let url: URL;
    let turnId: string | undefined;
    try {
      url = new URL(req.url ?? '/', 'http://api.invalid');
      const segment = EGRESS_PATH.exec(url.pathname)?.[1];
      turnId = segment === undefined ? undefined : decodeURIComponent(segment);
    } catch {
      return answer(socket, 'invalid_request', 'malformed request target');
    }
    if (turnId === undefined) return answer(socket, 'not_found', `no route for ${req.method} ${url.pathname}`);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return answer(socket, 'invalid_request', 'the egress route takes a WebSocket');
    const host = url.searchParams.get('host') ?? '';
    // Digits only, as a URL writes a port: Number() would take 0x50, 8e1 or " 80" as 80.
    const portText = url.searchParams.get('port') ?? '';
    const port = /^[1-9][0-9]{0,4}$/.test(portText) ? Number(portText) : Number.NaN;
    const mode = url.searchParams.get('mode');
    if (!validHost(host) || !Number.isInteger(port) || port < 1 || port > 65535 || (mode !== 'tls' && mode !== 'http')) {
      return answer(socket, 'invalid_request', 'egress needs host, port (1-65535) and mode (tls or http)');
    }
    // What ws checks before it upgrades: a handshake it would refuse is refused before it counts.
    const key = req.headers['sec-websocket-key'] ?? '';
    const version = req.headers['sec-websocket-version'] ?? '';
    if (!/^[+/0-9A-Za-z]{22}==$/.test(key) || (version !== '8' && version !== '13')) {
      return answer(socket, 'invalid_request', 'not a WebSocket handshake (Sec-WebSocket-Key, Sec-WebSocket-Version 13)');
    }
    const tunnelMode: TunnelMode = mode;
    let gone = false;
    socket.once('close', () => (gone = true));
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    service.authenticateRunner(token, turnId).then(
      async (turn) => {
        const request = { turn: { id: turn.id, userId: turn.userId, deadlineAt: turn.deadlineAt }, host, port, mode: tunnelMode };
        const admission = await tunnels.admit(request);
        // Refused, it is answered without a WebSocket: a refusal holds nothing of the API's.
        if ('refused' in admission) return answer(socket, 'forbidden', admission.refused);
        const { admitted } = admission;
        // ws gives a socket that went meanwhile no WebSocket, and says nothing.
        if (gone) return void tunnels.unused(admitted);
        let carried = false;
        socket.once('close', () => {
          if (!carried) void tunnels.unused(admitted);
        });
        wss.handleUpgrade(req, socket, head, (ws) => {
          carried = true;
          void tunnels.carry(ws, admitted);
        });
      },
      (error: unknown) => {
        const unauthenticated = (error as { code?: unknown }).code === 'unauthenticated';
        if (!unauthenticated) log(`egress: could not authenticate a tunnel: ${String(error)}`);
        answer(socket, unauthenticated ? 'unauthenticated' : 'unavailable', unauthenticated ? 'invalid or expired turn token' : 'try again');
      },
    );
  };

  const router = Router();
  router.get(INTERNAL_ROUTES.egress, (req, res, next) => {
    if (req.headers.upgrade === undefined) return next();
    // The response is never sent: the socket is the WebSocket's from here on.
    res.detachSocket(req.socket);
    upgrade(req, req.socket, Buffer.alloc(0));
  });
  return { upgrade, router };
}

/** A host name or an IPv4 literal as a URL would carry it; the policy judges it, this only keeps junk out. */
function validHost(host: string): boolean {
  return host.length > 0 && host.length <= 253 && /^[a-z0-9.-]+$/i.test(host);
}

/** An answer written on the raw socket (no response object exists for an upgrade), as the API's other errors are. */
function answer(socket: Duplex, code: ErrorCode, message: string): void {
  const status = STATUS_OF[code];
  const body = JSON.stringify({ error: { code, message } } satisfies ErrorBody);
  // Ended and then destroyed, as ws ends a handshake it refuses: a client that never closes its side holds nothing.
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
