import { chmod, rm } from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';

/** What becomes of one connection a sandbox opens on its bridge socket. */
export type ApiConnector = (inbound: net.Socket) => void;

/**
 * The runner's own listener, in this process: the connection is handed to an HTTP server that
 * serves only the runner's routes and the model proxy, so nothing public is reachable from a
 * sandbox, whatever the auth mode.
 */
export function serveWith(server: http.Server): ApiConnector {
  return (inbound) => server.emit('connection', inbound);
}

/** Piped to a loopback port: a stand-in for the cloud, where a sandbox reaches the API's URL. */
export function forwardToPort(port: number): ApiConnector {
  return (inbound) => {
    const outbound = net.connect(port, '127.0.0.1');
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
    inbound.pipe(outbound).pipe(inbound);
  };
}

/**
 * Connections one sandbox may hold open to the API at once. The agent needs a handful (its model
 * calls, progress, state); each costs the API process an open file, and a sandbox holding
 * thousands would starve every other sandbox of them.
 */
export const MAX_BRIDGE_CONNECTIONS = 64;

/**
 * The sandbox has no network; its only way out is a unix socket bind-mounted into it. Each
 * connection on that socket goes to `connect`, and nowhere else.
 */
export async function openApiBridge(socketPath: string, connect: ApiConnector): Promise<{ close(): Promise<void> }> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    if (connections.size >= MAX_BRIDGE_CONNECTIONS) {
      inbound.destroy();
      return;
    }
    connections.add(inbound);
    inbound.on('close', () => connections.delete(inbound));
    connect(inbound);
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  // The sandbox uid is not the service's: it must be allowed to connect.
  await chmod(socketPath, 0o666);
  return {
    close: async () => {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}
